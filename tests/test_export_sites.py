"""``marsice export``: CSV (documented columns), KML read back by GDAL, GeoJSON with its Mars CRS note."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import shapely

from marsice_plugin.result_layers import RESULT_LAYERS
from marsice_plugin.results import ResultsWriter
from marsice_plugin.sites.build import OBSERVATION_FIELDS, SITE_FIELDS, build_sites
from marsice_plugin.sites.export import CSV_COLUMNS, export_sites
from tests.conftest import run_qgis_python
from tests.test_sites import LAT0, LON0, write_catalogue, write_results

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sites.md"


@pytest.fixture(scope="module")
def sites_gpkg(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    results = write_results(tmp / "results.gpkg")
    # a third patch far west, at 120° W: its east longitude is 240 in 0..360
    west = shapely.Point(-120.0, -45.0).buffer(5e-5)
    with ResultsWriter(results, RESULT_LAYERS) as writer:
        attrs = {"product_id": "ESP_040001_1350_RED", "ls": 170.0}
        writer.write_product(
            attrs["product_id"],
            {
                "products": [(west.buffer(0.01), attrs)],
                "ice_candidates": [(west, {**attrs, "candidate_id": "ESP_040001_1350_RED:1", "max_probability": 0.7})],
            },
        )
    out = tmp / "sites.gpkg"
    build_sites([results], out, footprints=write_catalogue(tmp / "fp.gpkg"), measure_contrast=False)
    return out


def ogr_read(path: Path) -> dict:
    """Read a vector file with Debian's GDAL in its own process (never beside rasterio's GDAL in pytest)."""
    code = (
        "import json, sys\nfrom osgeo import ogr\n"
        "ds = ogr.Open(sys.argv[1])\nlayer = ds.GetLayer(0)\nout = []\n"
        "for f in layer:\n"
        "    g = f.GetGeometryRef()\n"
        "    out.append({'fields': {k: f.GetField(k) for k in f.keys()}, 'wkt': g.ExportToWkt() if g else None})\n"
        "print(json.dumps({'driver': ds.GetDriver().GetName(), 'features': out}))\n"
    )
    proc = subprocess.run(["/usr/bin/python3", "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_csv_columns_are_documented_and_carry_both_longitudes(sites_gpkg: Path, tmp_path: Path) -> None:
    out = export_sites(sites_gpkg, "csv", tmp_path / "sites.csv")
    with out.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == [c[0] for c in CSV_COLUMNS]
    docs = DOCS.read_text(encoding="utf-8")
    for name in [*reader.fieldnames, *(f.name for f in SITE_FIELDS), *(f.name for f in OBSERVATION_FIELDS)]:
        assert f"| `{name}` |" in docs, f"{name} is not documented in docs/sites.md"
    assert len(rows) == 3
    west = next(r for r in rows if float(r["longitude_180"]) < 0)
    assert float(west["longitude"]) == pytest.approx(240.0, abs=1e-6)
    assert float(west["longitude_180"]) == pytest.approx(-120.0, abs=1e-6)
    assert float(west["latitude"]) == pytest.approx(-45.0, abs=1e-6)
    main = next(r for r in rows if r["products"] == "ESP_030001_1297_RED,ESP_030101_1297_RED")
    assert float(main["latitude"]) == pytest.approx(LAT0, abs=1e-4)
    assert float(main["longitude"]) == pytest.approx(LON0, abs=1e-4) == float(main["longitude_180"])
    assert main["web_urls"].split()[0] == "https://www.uahirise.org/ESP_030001_1297"
    assert main["jp2_urls"].split()[1].endswith("ESP_030101_1297_RED.JP2")
    assert (float(main["request_ls_start"]), float(main["request_ls_end"])) == (145.0, 190.0)
    assert main["plot"] == ""  # no plots were asked for


def test_kml_is_read_by_gdal_with_mars_coordinates(sites_gpkg: Path, tmp_path: Path) -> None:
    out = export_sites(sites_gpkg, "kml", tmp_path / "sites.kml")
    text = out.read_text(encoding="utf-8")
    assert "Mars, not Earth" in text
    read = ogr_read(out)
    assert read["driver"] in ("LIBKML", "KML") and len(read["features"]) == 3
    by_name = {f["fields"].get("Name", f["fields"].get("name")): f for f in read["features"]}
    west = by_name["site_45.0000S_240.0000E"]
    point = shapely.from_wkt(west["wkt"])
    assert (point.x, point.y) == pytest.approx((-120.0, -45.0), abs=1e-6)
    (main,) = [f for name, f in by_name.items() if "S_031.40" in name]
    assert "https://www.uahirise.org/ESP_030001_1297" in main["fields"]["description"]
    if read["driver"] == "LIBKML":  # ExtendedData becomes fields
        assert main["fields"]["n_detected"] == "2" and west["fields"]["longitude"] == "240.0"


def test_geojson_has_outlines_and_the_mars_crs_note(sites_gpkg: Path, tmp_path: Path) -> None:
    out = export_sites(sites_gpkg, "geojson")
    assert out == sites_gpkg.with_suffix(".geojson")
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["mars_crs"] == "IAU_2015:49900" and "Mars" in doc["crs_note"]
    crs = doc["crs"]["properties"]["name"]  # the GeoJSON 2008 member GDAL and QGIS read
    assert crs.startswith('GEOGCS["Mars (2015) - Sphere / Ocentric"') and "3396190" in crs and "AUTHORITY" not in crs
    assert {f["properties"]["mars_crs"] for f in doc["features"]} == {"IAU_2015:49900"}
    read = ogr_read(out)
    assert len(read["features"]) == 3
    geoms = [shapely.from_wkt(f["wkt"]) for f in read["features"]]
    assert all(g.geom_type == "MultiPolygon" for g in geoms)
    assert any(g.contains(shapely.Point(LON0, LAT0)) for g in geoms)


def test_export_cli_and_observations_csv(sites_gpkg: Path, tmp_path: Path, marsice_cli) -> None:
    target = tmp_path / "obs.csv"
    proc = marsice_cli("export", str(sites_gpkg), "--observations", "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    with target.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["transition"] for r in rows} >= {"persisted", "disappeared", "not yet processed"}
    bad = marsice_cli("export", str(tmp_path / "missing.gpkg"), "--format", "kml")
    assert bad.returncode == 2 and "marsice sites" in bad.stderr


def test_exports_get_the_mode_of_a_plain_new_file(sites_gpkg: Path, tmp_path: Path) -> None:
    """With umask 022 every export is 0644 (mkstemp's 0600 made them unreadable to others); a replaced file keeps
    its own mode, as rewriting it would."""
    previous = os.umask(0o022)
    try:
        outs = [export_sites(sites_gpkg, fmt, tmp_path / f"s.{fmt}") for fmt in ("csv", "kml", "geojson")]
        outs.append(export_sites(sites_gpkg, "csv", tmp_path / "obs.csv", observations=True))
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in outs} == dict.fromkeys(
            ["s.csv", "s.kml", "s.geojson", "obs.csv"], "0o644"
        )
        outs[0].chmod(0o640)
        export_sites(sites_gpkg, "csv", outs[0])
        assert outs[0].stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obs.csv", "s.csv", "s.geojson", "s.kml"]


def test_export_refuses_its_input_and_a_wrong_extension(sites_gpkg: Path, tmp_path: Path) -> None:
    """The sites file is never the output (also through a hard link), and each format has its extension."""
    from marsice_plugin.errors import OutputError

    link = tmp_path / "link.csv"
    os.link(sites_gpkg, link)
    before = sites_gpkg.read_bytes()
    with pytest.raises(OutputError, match="is the input sites.gpkg, an input of this run"):
        export_sites(sites_gpkg, "csv", link)
    for fmt, name, ending in [("geojson", "s.kml", ".geojson or .json"), ("csv", "s.txt", ".csv")]:
        with pytest.raises(OutputError, match=f"give a name ending in {ending}$"):
            export_sites(sites_gpkg, fmt, tmp_path / name)
    assert export_sites(sites_gpkg, "geojson", tmp_path / "s.json").exists()  # .json is GeoJSON too
    assert sites_gpkg.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "s.json"]


@pytest.mark.qgis
def test_geojson_opens_in_qgis_in_the_mars_sphere_not_wgs84(sites_gpkg: Path, tmp_path: Path) -> None:
    """QGIS 3.22 opens the export in a valid Mars CRS (a GeoJSON without ``crs`` opens as EPSG:4326)."""
    out = export_sites(sites_gpkg, "geojson", tmp_path / "sites.geojson")
    bare = tmp_path / "bare.geojson"
    doc = json.loads(out.read_text(encoding="utf-8"))
    bare.write_text(json.dumps({k: v for k, v in doc.items() if k != "crs"}), encoding="utf-8")
    code = (
        "from qgis.core import QgsVectorLayer\n"
        "out = {}\n"
        f"for key, path in (('export', '{out}'), ('bare', '{bare}')):\n"
        "    layer = QgsVectorLayer(path, 'x', 'ogr')\n"
        "    crs = layer.crs()\n"
        "    out[key] = [layer.isValid(), layer.featureCount(), crs.isValid(), crs.authid(), crs.toProj(),\n"
        "                crs.description()]\n"
        "print(json.dumps(out))\n"
    )
    seen = run_qgis_python(code, tmp_path / "home")
    assert seen["export"][:5] == [True, 3, True, "", "+proj=longlat +R=3396190 +no_defs +type=crs"]
    assert seen["export"][5] == "Mars (2015) - Sphere / Ocentric"
    assert seen["bare"][:4] == [True, 3, True, "EPSG:4326"]  # what the file gave before: an Earth CRS


def test_export_cli_geojson_writes_the_crs_member_and_says_where_it_can_be_lost(sites_gpkg: Path, tmp_path: Path):
    out = tmp_path / "s.geojson"
    proc = subprocess.run(
        [sys.executable, "-m", "marsice_plugin", "--progress", "json", "export", str(sites_gpkg), "--format",
         "geojson", "-o", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    (note,) = [e["message"] for e in events if e["type"] == "log"]
    assert "RFC 7946" in note and "GeoPackage" in note and "KML" in note
    assert json.loads(out.read_text(encoding="utf-8"))["crs"]["type"] == "name"
