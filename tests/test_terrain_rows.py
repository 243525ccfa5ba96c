"""Terrain takes rows: a scan's candidates get, in memory, exactly the fields ``marsice terrain`` writes into a file.

The scan used to write each product's candidates to a scratch GeoPackage so that the terrain code could read them
back; now :func:`marsice_plugin.terrain.candidates.candidate_terrain` scores the rows themselves, and the file-level
:func:`marsice_plugin.terrain.analysis.run_terrain` reads and updates rows through :mod:`marsice_plugin.gpkg`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from marsice_plugin.gpkg import Field, read_layer, write_new
from marsice_plugin.mars_crs import common_crs
from marsice_plugin.product import open_product
from marsice_plugin.terrain.analysis import run_terrain
from marsice_plugin.terrain.candidates import TERRAIN_FIELDS, candidate_terrain
from marsice_plugin.vectors import window_footprint

NAMES = [f.name for f in TERRAIN_FIELDS]


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    out = tmp_path_factory.mktemp("terrain_rows")
    return write_sample_product(out, SceneConfig(width=512, height=512, seed=5, n_boulders=60), dtm_factor=4)


def _rows(product) -> list:
    """Four patches on the image (one across its edge, where the DTM has no value) and one off it."""
    with open_product(product.label_path) as p:
        windows = [(240, 240, 30, 30), (40, 300, 12, 20), (400, 60, 50, 25), (500, 500, 40, 40), (1600, 100, 20, 20)]
        geoms = [window_footprint(p.transform, p.crs, *w) for w in windows]
    return [
        (g, {"product_id": product.product_id, "candidate_id": f"c{i}", "max_probability": 0.5 + 0.1 * i})
        for i, g in enumerate(geoms)
    ]


def test_rows_get_the_fields_that_the_file_run_writes(product, tmp_path: Path) -> None:
    rows = _rows(product)
    fields = candidate_terrain(product.dtm_path, product.label_path, rows)
    assert len(fields) == 5 and fields[4] is None  # off the image: no fields, as the file run leaves it NULL
    for values in fields[:3]:
        assert list(values) == NAMES and 0.0 <= values["terrain_score"] <= 1.0 and values["terrain_aligned"] in (0, 1)
        assert values["terrain_note"] is None
    # across the image's corner, where the DTM has no height: NULL fields and a note saying why
    assert fields[3] == {**dict.fromkeys(NAMES), "terrain_note": "outside DTM"}

    schema = [Field("product_id", str), Field("candidate_id", str), Field("max_probability", float)]

    def build(gpkg) -> None:
        srs = gpkg.add_srs(common_crs())
        gpkg.create_layer("ice_candidates", schema, "MULTIPOLYGON", srs)
        gpkg.insert("ice_candidates", schema, rows)

    results = write_new(tmp_path / "results.gpkg", build)
    result = run_terrain(product.dtm_path, product.label_path, tmp_path / "t", candidates=results)
    assert result.candidates_updated == 4
    written = read_layer(results, "ice_candidates", ["candidate_id", *NAMES], geometry=False)
    assert [a["candidate_id"] for _, a in written] == [f"c{i}" for i in range(5)]
    for (_, attrs), values in zip(written, fields, strict=True):
        expected = values or dict.fromkeys(NAMES)
        assert {n: attrs[n] for n in NAMES} == expected  # the same floats, bit for bit


def test_scan_adds_terrain_to_its_rows_without_writing_a_file(product, tmp_path: Path, monkeypatch) -> None:
    from marsice_plugin.scan.tasks import ProductJob, ProductOutcome, _add_terrain

    rows = _rows(product)
    expected = candidate_terrain(product.dtm_path, product.label_path, rows)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where a scratch GeoPackage would have gone
    outcome = ProductOutcome(product.product_id, ok=False, rows={"ice_candidates": rows})
    job = ProductJob(product.product_id, (), str(tmp_path), "model.keras")
    assert _add_terrain(outcome, job, product.label_path, product.dtm_path) == "applied"
    for (_, attrs), values in zip(outcome.rows["ice_candidates"], expected, strict=True):
        assert all(n not in attrs for n in NAMES) if values is None else {n: attrs[n] for n in NAMES} == values
    assert list(scratch.iterdir()) == [] and list(tmp_path.iterdir()) == [scratch]
