"""``marsice terrain`` end to end on a generated 1024 x 1024 product with its 4x coarser HiRISE-style DTM."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio

from marsice_plugin.gpkg import Field, parse_geometry_blob, write_new
from marsice_plugin.mars_crs import common_crs
from marsice_plugin.product import open_product
from marsice_plugin.synthetic.product_writer import write_sample_product
from marsice_plugin.synthetic.scene import SceneConfig
from marsice_plugin.vectors import transform_geometry

from .small_rasters import label_free_copy


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("terrain_sample")
    return write_sample_product(out, SceneConfig(width=1024, height=1024, seed=3), dtm_factor=4)


def _candidates(sample, path: Path) -> int:
    """A results-like GeoPackage: truth ice patches and the bright-dust decoys, both at probability 0.8."""
    import shapely
    from rasterio import features

    with open_product(sample.label_path) as p:
        crs, transform = p.crs, p.transform
    con = sqlite3.connect(sample.truth_path)
    ice = [parse_geometry_blob(b) for (b,) in con.execute("SELECT geom FROM ice_truth")]
    con.close()
    dust_mask = sample.scene.dust
    dust = [
        shapely.geometry.shape(g)
        for g, v in features.shapes(dust_mask.astype(np.uint8), mask=dust_mask, transform=transform)
        if v == 1
    ]
    fields = [Field("product_id", str), Field("candidate_id", str), Field("max_probability", float)]
    rows = [
        (
            transform_geometry(g, crs),
            {"product_id": sample.product_id, "candidate_id": f"{kind}{i}", "max_probability": 0.8},
        )
        for kind, geoms in (("ice", ice), ("dust", dust))
        for i, g in enumerate(geoms)
    ]

    def build(gpkg) -> None:
        srs = gpkg.add_srs(common_crs())
        gpkg.create_layer("ice_candidates", fields, "POLYGON", srs)
        gpkg.insert("ice_candidates", fields, rows)

    write_new(path, build)
    return len(rows)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marsice_plugin", *args], capture_output=True, text=True)


def test_cli_writes_aligned_rasters_and_scores_candidates(sample, tmp_path: Path) -> None:
    gpkg = tmp_path / "results.gpkg"
    n = _candidates(sample, gpkg)
    args = ["terrain", "--dtm", str(sample.dtm_path), "--image", str(sample.label_path), "-o", str(tmp_path / "t")]
    proc = _cli(*args, "--candidates", str(gpkg))
    assert proc.returncode == 0, proc.stderr
    assert "applied" in proc.stdout and f"{n} candidates scored" in proc.stdout
    # on the DTM's grid: its 2 m posts (the image's 1024 px of 0.5 m are 256 of them, 257 with a fractional offset)
    with open_product(sample.label_path) as p, rasterio.open(tmp_path / "t" / f"{sample.product_id}_slope.tif") as s:
        assert s.res == (2.0, 2.0) and s.width in (256, 257) and s.height in (256, 257)
        assert pyproj.CRS(s.crs.to_wkt()).equals(p.crs) and s.overviews(1) == [2]
        left, bottom, right, top = s.bounds
        assert left <= p.bounds[0] < left + 2 and top - 2 < p.bounds[3] <= top
        slope, image_transform, transform = s.read(1), p.transform, s.transform
    assert np.nanmin(slope) >= 0.0 and np.nanmax(slope) < 90.0
    with rasterio.open(tmp_path / "t" / f"{sample.product_id}_height.tif") as h:
        height = h.read(1)
    # each post's height against the scene's under its centre (the offset applied): the DTM is a 4 x 4 average
    rows, cols = np.mgrid[0 : height.shape[0], 0 : height.shape[1]] + 0.5
    x, y = transform * (cols, rows)
    col, row = ~image_transform * (x, y)
    inside = (col >= 0) & (col < 1024) & (row >= 0) & (row < 1024)
    r, c = row[inside].astype(int), col[inside].astype(int)
    valid = np.isfinite(height[inside]) & ~sample.scene.nodata[r, c]
    assert valid.mean() > 0.8
    assert np.mean(np.abs(height[inside][valid] - sample.scene.height[r, c][valid])) < 0.2  # metres

    con = sqlite3.connect(gpkg)
    rows = con.execute("SELECT candidate_id, terrain_score, terrain_rank_value, max_probability FROM ice_candidates")
    rows = rows.fetchall()
    assert len(rows) == n and all(0.0 <= r[1] <= 1.0 and r[3] == 0.8 for r in rows)
    ice = np.mean([r[1] for r in rows if r[0].startswith("ice")])
    dust = np.mean([r[1] for r in rows if r[0].startswith("dust")])
    assert ice > dust
    columns_before = [r[1] for r in con.execute("PRAGMA table_info(ice_candidates)")]
    con.close()

    proc = _cli(*args, "--candidates", str(gpkg))  # a re-run adds no column and gives the same values
    assert proc.returncode == 0, proc.stderr
    con = sqlite3.connect(gpkg)
    assert [r[1] for r in con.execute("PRAGMA table_info(ice_candidates)")] == columns_before
    again = con.execute("SELECT candidate_id, terrain_score, terrain_rank_value, max_probability FROM ice_candidates")
    assert again.fetchall() == rows
    con.close()
    assert not (tmp_path / "results.gpkg.lock").exists()  # the writer lock is released


# -- the sun of an image without a label: GeoTIFF tags or --sun-azimuth / --incidence ---------------------------------


def _geotiff(sample, folder: Path, tags: dict[str, str]) -> Path:
    """The product's pixels as a label-less float32 GeoTIFF named after the product, on the same grid and CRS."""
    return label_free_copy(sample, folder, tags)


def _events(proc: subprocess.CompletedProcess) -> list[dict]:
    import json

    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _outputs(folder: Path, pid: str) -> dict[str, np.ndarray]:
    out = {}
    for name in ("slope", "aspect", "poleward", "shadow", "height"):
        with rasterio.open(folder / f"{pid}_{name}.tif") as ds:
            out[name] = ds.read(1)
    return out


def _terrain_run(sample, tmp_path: Path, image: Path, name: str, options: list[str]) -> tuple[dict, list, list[str]]:
    """``marsice terrain`` of ``image`` with fresh candidates: its rasters, the candidates' scores, its log lines."""
    gpkg = tmp_path / f"{name}.gpkg"
    _candidates(sample, gpkg)
    args = ["--progress", "json", "terrain", "--dtm", str(sample.dtm_path), "--image", str(image)]
    proc = _cli(*args, "-o", str(tmp_path / name), "--candidates", str(gpkg), *options)
    assert proc.returncode == 0, proc.stderr
    logs = [e["message"] for e in _events(proc) if e["type"] == "log"]
    with contextlib.closing(sqlite3.connect(gpkg)) as con:
        scores = con.execute("SELECT candidate_id, terrain_score, terrain_rank_value FROM ice_candidates").fetchall()
    return _outputs(tmp_path / name, image.stem), scores, logs


def test_label_less_geotiff_with_sun_options_gives_the_outputs_of_its_tags(sample, tmp_path: Path) -> None:
    with open_product(sample.label_path) as p:
        az, inc = p.viewing.sun_azimuth_from_north, p.viewing.incidence_angle
    tagged = _geotiff(sample, tmp_path / "tagged", {"SUN_AZIMUTH_FROM_NORTH": repr(az), "INCIDENCE_ANGLE": repr(inc)})
    plain = _geotiff(sample, tmp_path / "plain", {})
    runs = {
        name: _terrain_run(sample, tmp_path, image, name, options)
        for name, image, options in (
            ("tags", tagged, []),
            ("options", plain, ["--sun-azimuth", repr(az), "--incidence", repr(inc)]),
            ("override", tagged, ["--incidence", "45"]),
        )
    }

    tags, options, override = runs["tags"], runs["options"], runs["override"]
    for name, values in tags[0].items():  # the options stand exactly for the tags
        assert np.array_equal(values, options[0][name], equal_nan=True), name
    assert options[1] == tags[1] and len(tags[1]) > 0
    assert f"sun azimuth {az:g}° from --sun-azimuth (the image does not give it)" in options[2]
    assert f"incidence {inc:g}° from --incidence (the image does not give it)" in options[2]
    assert not any("--" in line for line in tags[2])
    # given, an option wins over the tag, and says so: a lower sun (45° instead of 68°) casts fewer shadows
    assert f"--incidence 45° overrides the image's incidence of {inc:g}°" in override[2]
    assert override[0]["shadow"].sum() < tags[0]["shadow"].sum()
    assert np.array_equal(override[0]["slope"], tags[0]["slope"], equal_nan=True)


def test_sun_options_out_of_range_are_refused_in_one_line(sample, tmp_path: Path) -> None:
    base = ["terrain", "--dtm", str(sample.dtm_path), "--image", str(sample.label_path), "-o", str(tmp_path / "t")]
    for options, message in (
        (["--sun-azimuth", "400"], "--sun-azimuth 400 is out of range: give degrees clockwise from north, 0 to 360"),
        (["--sun-azimuth", "-5"], "--sun-azimuth -5 is out of range"),
        (["--incidence", "90"], "--incidence 90 is out of range: give the sun's angle from the vertical, 0 up to"),
        (["--incidence", "nan"], "--incidence nan is out of range"),
    ):
        proc = _cli(*base, *options)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("marsice: error: ") and message in line
    assert not (tmp_path / "t").exists()


def test_image_without_sun_asks_for_the_options(sample, tmp_path: Path) -> None:
    plain = _geotiff(sample, tmp_path / "plain", {})
    base = ["terrain", "--dtm", str(sample.dtm_path), "--image", str(plain), "-o", str(tmp_path / "t")]
    proc = _cli(*base)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "does not give the sun's azimuth and incidence" in line
    assert "SUN_AZIMUTH_FROM_NORTH / INCIDENCE_ANGLE" in line
    assert "pass --sun-azimuth DEG (clockwise from north) and --incidence DEG" in line
    half = _geotiff(sample, tmp_path / "half", {"SUN_AZIMUTH_FROM_NORTH": "297"})
    proc = _cli("terrain", "--dtm", str(sample.dtm_path), "--image", str(half), "-o", str(tmp_path / "t"))
    assert proc.returncode == 2 and "does not give the sun's incidence (" in proc.stderr
    assert not (tmp_path / "t").exists()


def test_label_less_geotiff_named_by_a_real_product_id_takes_the_catalogues_sun(sample, tmp_path: Path) -> None:
    """A GeoTIFF export keeps its product id as its name: the bundled catalogue gives its observation's sun
    (ESP_011707_1440: 282.6° from north, incidence 60.92°), logged, as the options would."""
    plain = _geotiff(sample, tmp_path / "plain", {})
    named = plain.rename(tmp_path / "plain" / "ESP_011707_1440_RED.tif")
    catalogue = _terrain_run(sample, tmp_path, named, "catalogue", [])
    options = _terrain_run(sample, tmp_path, named, "options", ["--sun-azimuth", "282.6", "--incidence", "60.92"])
    for name, values in catalogue[0].items():
        assert np.array_equal(values, options[0][name], equal_nan=True), name
    assert catalogue[1] == options[1] and len(catalogue[1]) > 0
    said = "from the bundled catalogue (ESP_011707_1440_RED does not give it)"
    assert f"sun azimuth 282.6° {said}" in catalogue[2]
    assert f"incidence 60.92° {said}" in catalogue[2]
    assert not any("bundled catalogue" in line for line in options[2])  # options given: no lookup


_QGIS_SCRIPT = r"""
sys.path.insert(0, P["repo"])
import marsice_plugin
from qgis.core import QgsProcessingContext, QgsProcessingParameterDefinition

plugin = marsice_plugin.classFactory(None)
plugin.initProcessing()
alg = QgsApplication.processingRegistry().createAlgorithmById("marsice:terrain")
context = QgsProcessingContext()
base = {"DTM": "/data/DTEEC.IMG", "INPUT": "/data/P.tif", "OUTPUT": "/out/t"}
R = {
    "argv": [alg.cli_args({**base, **extra}, context) for extra in P["extras"]],
    "accepted": [alg.checkParameterValues({**base, **extra}, context)[0] for extra in P["checked"]],
    "definitions": {
        name: [d.minimum(), d.maximum(), bool(d.flags() & QgsProcessingParameterDefinition.FlagOptional),
               bool(d.flags() & QgsProcessingParameterDefinition.FlagAdvanced)]
        for name in ("SUN_AZIMUTH", "INCIDENCE") for d in [alg.parameterDefinition(name)]
    },
}
print(json.dumps(R), flush=True)
app.exitQgis()
"""


@pytest.mark.qgis
def test_qgis_terrain_maps_the_sun_parameters_onto_the_options(tmp_path: Path) -> None:
    """The algorithm only maps: empty leaves the image's sun, a value becomes the option; QGIS bounds the range."""
    import json

    from .conftest import REPO, run_qgis_python

    extras = [{}, {"SUN_AZIMUTH": 297.5, "INCIDENCE": 68}, {"INCIDENCE": 45.25}, {"SUN_AZIMUTH": None}]
    checked = [{"SUN_AZIMUTH": 360}, {"SUN_AZIMUTH": 400}, {"INCIDENCE": -1}]
    params = json.dumps(json.dumps({"repo": str(REPO), "extras": extras, "checked": checked}))
    result = run_qgis_python(f"P = json.loads({params})\n" + _QGIS_SCRIPT, tmp_path / "home")
    base = ["terrain", "--dtm", "/data/DTEEC.IMG", "--image", "/data/P.tif", "-o", "/out/t", "--ring-m", "5.0"]
    assert result["argv"] == [
        base,
        [*base, "--sun-azimuth", "297.5", "--incidence", "68.0"],
        [*base, "--incidence", "45.25"],
        base,
    ]
    assert result["accepted"] == [True, False, False]
    assert result["definitions"] == {"SUN_AZIMUTH": [0.0, 360.0, True, True], "INCIDENCE": [0.0, 90.0, True, True]}
