"""Map scales and download sizes of the bundled catalogue: values checked against real products, totals that count.

The bundled catalogue's source index lists neither map scales nor compressed sizes (see
``marsice_plugin/catalogue/size_estimate.py``). The checks here compare the bundled values with what real
products say: the recorded ODE reply (tests/data/ode: three RED/COLOR pairs with their listed JP2 sizes and
index records) and a real RED label (tests/data/ESP_013951_1955_RED.LBL), neither used by the build.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import socket
import sqlite3

import pytest

from marsice_plugin.catalogue.footprints import read_footprints, write_footprints
from marsice_plugin.catalogue.index import BUNDLED_PATH, load_bundled, rdr_urls
from marsice_plugin.catalogue.search import SearchQuery
from marsice_plugin.catalogue.size_estimate import color_frame, color_frame_pixels, red_frame
from marsice_plugin.scan.plan import make_jobs, pull_plan, size_estimates
from tests.catalogue_http import real_products
from tests.conftest import REPO

PAIRS = ("PSP_007361_1800", "ESP_023817_1800", "ESP_041909_1800")


def _rows() -> dict[str, dict[str, str]]:
    with gzip.open(BUNDLED_PATH, "rt", encoding="utf-8") as fh:
        text = "".join(line for line in fh if not line.startswith("#"))
    return {r["product_id"]: r for r in csv.DictReader(io.StringIO(text))}


@pytest.fixture(scope="module")
def rows() -> dict[str, dict[str, str]]:
    return _rows()


def _ode() -> dict[str, dict]:
    """pdsid -> (lines, samples, JP2 KBytes, map scale) from the recorded ODE reply."""
    out = {}
    for p in real_products():
        record = next(n for n in p["ODE_notes"]["ODE_note"] if n.startswith('"MROHR'))
        fields = [f.strip() for f in next(csv.reader(io.StringIO(record)))]
        jp2 = next(f for f in p["Product_files"]["Product_file"] if f["FileName"] == f"{p['pdsid']}.JP2")
        out[p["pdsid"]] = {"lines": int(fields[17]), "samples": int(fields[18]), "kbytes": int(jp2["KBytes"]),
                           "scale": float(p["Map_scale"])}  # fmt: skip
    return out


def test_every_row_carries_size_estimates_and_equatorial_rows_a_map_scale(rows):
    assert all(r["est_jp2_mb"] and r["est_red_jp2_mb"] for r in rows.values())
    scales = [r["map_scale"] for r in rows.values()]
    assert {s for s in scales if s} == {"0.25", "0.50", "1.00"}
    assert sum(1 for s in scales if s) == 56304
    polar = [r for r in rows.values() if abs(float(r["min_lat"]) + float(r["max_lat"])) / 2 >= 65]
    assert len(polar) > 14000 and all(r["map_scale"] == "" for r in polar)  # no scale rather than a wrong one


def test_the_index_size_is_the_color_frame_and_the_scale_is_odes(rows):
    ode = _ode()
    for obs in PAIRS:
        row, color = rows[f"{obs}_COLOR"], ode[f"{obs}_COLOR"]
        assert color_frame_pixels(int(row["uncompressed_bytes"])) == color["lines"] * color["samples"]
        assert float(row["map_scale"]) == color["scale"] == 0.5
        lines, samples = color_frame(
            float(row["min_lat"]), float(row["max_lat"]), color["lines"] * color["samples"], 0.5
        )
        assert abs(lines - color["lines"]) <= 0.002 * color["lines"] and abs(samples - color["samples"]) <= 20


def test_red_estimates_are_near_the_real_listed_sizes(rows):
    ode = _ode()
    real = {obs: ode[f"{obs}_RED"]["kbytes"] * 1024 for obs in PAIRS}
    estimate = {obs: float(rows[f"{obs}_COLOR"]["est_red_jp2_mb"]) * 1e6 for obs in PAIRS}
    ratios = {obs: estimate[obs] / real[obs] for obs in PAIRS}
    assert ratios == pytest.approx({"PSP_007361_1800": 1.154, "ESP_023817_1800": 0.861, "ESP_041909_1800": 1.023},
                                   abs=0.002)  # fmt: skip
    assert sum(estimate.values()) / sum(real.values()) == pytest.approx(1.046, abs=0.002)


def test_the_red_frame_of_a_real_red_label_is_predicted_from_its_color_row(rows):
    label = (REPO / "tests" / "data" / "ESP_013951_1955_RED.LBL").read_text()
    values = {k: int(label.split(f"{k} ", 1)[1].split("=", 1)[1].split()[0]) for k in ("LINES", "LINE_SAMPLES")}
    row = rows["ESP_013951_1955_COLOR"]
    assert row["map_scale"] == "0.50"
    pixels = color_frame_pixels(int(row["uncompressed_bytes"]))
    lines, samples = red_frame(*color_frame(float(row["min_lat"]), float(row["max_lat"]), pixels, 0.5), 0.5)
    assert values == {"LINES": 67395, "LINE_SAMPLES": 19243}
    assert lines * samples / (values["LINES"] * values["LINE_SAMPLES"]) == pytest.approx(1.0, abs=0.01)


def test_red_records_carry_the_estimate_and_never_a_listed_size():
    red = {p.product_id: p for p in load_bundled("RED")}
    p = red["PSP_007361_1800_RED"]
    assert p.size_estimated and p.download_kbytes is None and p.jp2_kbytes is None  # downloads are not checked on it
    assert p.estimated_bytes == 537_300_000 + 9 * 1024 and p.download_bytes == p.estimated_bytes
    assert p.map_scale == 0.5


def test_the_paper_selection_has_a_meaningful_total(marsice_cli, tmp_path):
    out = tmp_path / "fp.gpkg"
    proc = marsice_cli("--progress", "json", "search", "--lat", "-60", "-40", "--ls", "140", "200", "--source",
                       "bundled", "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (result,) = [e for e in map(json.loads, proc.stdout.splitlines()) if e["type"] == "result"]
    outputs = result["outputs"]
    assert outputs["products"] == 1409 and outputs["unknown_sizes"] == 0
    assert outputs["download_gb"] == outputs["estimated_gb"] == pytest.approx(677.887, abs=0.001)
    assert "677.89 GB of it estimated from image sizes for 1409 products" in result["summary"]
    with sqlite3.connect(out) as db:
        marked = db.execute("SELECT count(*), sum(size_estimated), round(sum(estimated_mb) / 1000, 1), "
                            "count(jp2_kbytes), count(map_scale) FROM footprints").fetchone()  # fmt: skip
    assert marked == (1409, 1409, 677.9, 0, 1409)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_dry_run_counts_estimates_and_says_so(marsice_cli, tmp_path):
    """A HEAD request that gets no answer leaves the size unknown; the footprint row's estimate then counts."""
    base = f"http://127.0.0.1:{_closed_port()}/PDS/"
    chosen = [p for p in load_bundled("RED") if p.observation_id in PAIRS]
    for p in chosen:
        p.jp2_url, p.lbl_url = rdr_urls(p.product_id, base)
    gpkg = write_footprints(tmp_path / "fp.gpkg", chosen)
    read = [r.estimated_bytes for r in read_footprints(gpkg)]  # the layer keeps 0.1 MB
    assert read == pytest.approx([p.estimated_bytes for p in chosen], abs=50_000)
    dry = marsice_cli("download", "--from", str(gpkg), "--to", str(tmp_path / "cache"), "--dry-run", "--timeout", "5")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 6 files, 1.035 GB (1.035 GB of it estimated from image sizes, 6 files); nothing downloaded" in (
        dry.stdout
    )
    assert "PSP_007361_1800_RED.JP2: ~537.3 MB" in dry.stdout
    capped = marsice_cli("download", "--from", str(gpkg), "--to", str(tmp_path / "cache"), "--max-gb", "1",
                         "--timeout", "5")  # fmt: skip
    assert capped.returncode == 5 and "1.035 GB (1.035 GB of it estimated" in capped.stderr
    assert "exceeds --max-gb 1" in capped.stderr and not (tmp_path / "cache" / "PSP_007361_1800_RED.JP2").exists()


def test_scan_plan_counts_estimates_without_asking_any_server(tmp_path):
    from marsice_plugin.scan.plan import JobOptions

    chosen = list(SearchQuery(lat=(-60, -40), ls=(140, 200)).filter(load_bundled("RED")))[:10]
    jobs = make_jobs(chosen, JobOptions(cache_dir=tmp_path, model_path=tmp_path / "m.keras"))
    plan = pull_plan(jobs, tmp_path, probe=False, estimates=size_estimates(chosen))
    assert plan.unknown == 0 and len(plan.estimated) == 20
    assert plan.known_bytes == plan.estimated_bytes == sum(p.estimated_bytes for p in chosen)
    assert "of it estimated from image sizes, 20 files" in plan.text()
    assert plan.listing()[0].split(": ")[1].startswith("~")
