"""RDRCUMINDEX.TAB read through the real RDRCUMINDEX.LBL's column definitions.

The table rows are real: ODE quotes each product's index record in its ODE_notes (seven records in
the recorded responses), 819 characters each; with CR LF they are the label's ROW_BYTES = 821.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import shapely

from marsice_plugin.catalogue.build_bundled import main as build_main
from marsice_plugin.catalogue.index import load_bundled, read_cumindex, read_table_label
from marsice_plugin.catalogue.search import SearchQuery
from marsice_plugin.errors import CatalogueError

from .catalogue_http import load_ode
from .conftest import DATA


def real_index_records() -> list[str]:
    records = []
    for name in (
        "ode_rest_hirise_bbox_lat0_lon0_6products.json",
        "ode_rest_hirise_productid_ESP_016430_2095_COLOR.json",
    ):
        products = load_ode(name)["ODEResults"]["Products"]["Product"]
        for p in products if isinstance(products, list) else [products]:
            records += [n for n in p["ODE_notes"]["ODE_note"] if n.startswith('"MROHR')]
    return records


@pytest.fixture
def cumindex(tmp_path: Path) -> Path:
    tab = tmp_path / "RDRCUMINDEX.TAB"
    tab.write_bytes("".join(r + "\r\n" for r in real_index_records()).encode("ascii"))
    (tmp_path / "RDRCUMINDEX.LBL").write_bytes((DATA / "RDRCUMINDEX.LBL").read_bytes())
    return tab


def test_label_layout():
    layout = read_table_label(DATA / "RDRCUMINDEX.LBL")
    assert layout.row_bytes == 821 and layout.rows == 104930 and layout.table_file == "RDRCUMINDEX.TAB"
    assert len(layout.columns) == 54
    by_name = {c.name: c for c in layout.columns}
    assert (by_name["PRODUCT_ID"].start, by_name["PRODUCT_ID"].size) == (117, 21)
    assert by_name["SOLAR_LONGITUDE"].data_type == "ASCII_REAL"


def test_real_rows_read_through_the_label(cumindex):
    products = {p.product_id: p for p in read_cumindex(cumindex)}
    assert len(products) == 7
    p = products["ESP_016430_2095_COLOR"]
    assert p.observation_id == "ESP_016430_2095"
    assert (p.ls, p.incidence, p.map_scale) == (43.691, 40.2813, 0.5)
    assert (p.min_lat, p.max_lat, p.min_lon, p.max_lon) == (28.8145, 29.307, 72.6062, 72.7833)
    assert (
        p.jp2_url
        == "https://hirise-pds.lpl.arizona.edu/PDS/RDR/ESP/ORB_016400_016499/ESP_016430_2095/ESP_016430_2095_COLOR.JP2"
    )
    assert p.start_time.isoformat() == "2010-01-27T17:48:36+00:00"
    poly = shapely.from_wkt(p.footprint_wkt)
    assert list(poly.exterior.coords)[:4] == [
        (72.7395, 28.8218),
        (72.7172, 28.8195),
        (72.6503, 29.3003),
        (72.6727, 29.3026),
    ]
    assert not p.footprint_approximate
    # The equator-crossing RED product of the box search: corners on both sides of 0° stay together.
    red = products["PSP_007361_1800_RED"]
    assert red.product_type == "RED"
    assert shapely.from_wkt(red.footprint_wkt).bounds[2] - shapely.from_wkt(red.footprint_wkt).bounds[0] < 1


def test_columns_are_taken_from_the_label_not_fixed_offsets(cumindex, tmp_path):
    """Move PRODUCT_ID and SOLAR_LONGITUDE to new places in a rewritten table and label: same values."""
    label = (DATA / "RDRCUMINDEX.LBL").read_text()
    layout = read_table_label(DATA / "RDRCUMINDEX.LBL")
    cols = {c.name: c for c in layout.columns}
    moved = tmp_path / "moved"
    moved.mkdir()
    rows = []
    for record in real_index_records():
        pid = record[cols["PRODUCT_ID"].start : cols["PRODUCT_ID"].start + 21]
        ls = record[cols["SOLAR_LONGITUDE"].start : cols["SOLAR_LONGITUDE"].start + 10]
        blanked = list(record)
        for c in (cols["PRODUCT_ID"], cols["SOLAR_LONGITUDE"]):
            blanked[c.start : c.start + c.size] = " " * c.size
        rows.append("".join(blanked) + f'"{pid}",{ls}' + "\r\n")
    new_row_bytes = len(rows[0])
    text = label.replace("RECORD_BYTES = 821", f"RECORD_BYTES = {new_row_bytes}")
    text = text.replace("ROW_BYTES = 821", f"ROW_BYTES = {new_row_bytes}")
    text = re.sub(r"(NAME = PRODUCT_ID\s+DATA_TYPE = CHARACTER\s+START_BYTE = )118", r"\g<1>821", text)
    text = re.sub(r"(NAME = SOLAR_LONGITUDE\s+DATA_TYPE = ASCII_REAL\s+START_BYTE = )581", r"\g<1>844", text)
    assert "START_BYTE = 821" in text and "START_BYTE = 844" in text
    (moved / "RDRCUMINDEX.LBL").write_text(text)
    (moved / "RDRCUMINDEX.TAB").write_text("".join(rows), newline="")
    original = {p.product_id: p.ls for p in read_cumindex(cumindex)}
    again = {p.product_id: p.ls for p in read_cumindex(moved / "RDRCUMINDEX.TAB")}
    assert again == original


def test_refresh_bundled_catalogue_from_the_index(cumindex, tmp_path):
    out = tmp_path / "catalogue.csv.gz"
    assert build_main(["--cumindex", str(cumindex), "-o", str(out)]) == 0
    red = load_bundled("RED", out)
    # RED rows of the index are used as they are, with footprints from the index corners; the observation
    # with a COLOR row only gets a RED record derived from it, marked approximate.
    exact = ["ESP_023817_1800_RED", "ESP_041909_1800_RED", "PSP_007361_1800_RED"]
    assert sorted(p.product_id for p in red) == sorted([*exact, "ESP_016430_2095_RED"])
    assert all(not p.footprint_approximate and p.map_scale in (0.25, 0.5) for p in red if p.product_id in exact)
    derived = next(p for p in red if p.product_id == "ESP_016430_2095_RED")
    assert derived.footprint_approximate and "COLOR" in derived.footprint_note
    color = load_bundled("COLOR", out)
    assert len(color) == 4
    # the sun azimuth from north, (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360 of each index row, kept to 0.001°
    indexed = {p.product_id: p.sun_azimuth for p in read_cumindex(cumindex)}
    assert all(a is not None and 0 <= a < 360 for a in indexed.values())
    for p in [*red, *color]:
        if p.product_id in indexed:
            assert p.sun_azimuth == pytest.approx(indexed[p.product_id], abs=5e-4)
    found = list(SearchQuery(lat=(28, 30), product_type="COLOR", scales=(0.5,)).filter(color))
    assert [p.product_id for p in found] == ["ESP_016430_2095_COLOR"]


def test_wrong_label_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogueError, match="no TABLE object"):
        read_table_label(DATA / "ESP_013951_1955_RED.LBL")
    with pytest.raises(CatalogueError, match="cannot read index table"):
        read_cumindex(tmp_path / "missing.TAB", DATA / "RDRCUMINDEX.LBL")
