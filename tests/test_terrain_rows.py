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
from marsice_plugin.terrain import ranking
from marsice_plugin.terrain.analysis import run_terrain
from marsice_plugin.terrain.candidates import TERRAIN_FIELDS, candidate_terrain
from marsice_plugin.terrain.ranking import KEPT_TERMS, TERMS
from marsice_plugin.vectors import window_footprint

NAMES = [f.name for f in TERRAIN_FIELDS]

#: The terms as README *Ranking* defines them, from a row's written ``terrain_*`` fields (None: no value).
DOCUMENTED_TERMS = {
    "poleward": lambda a: a["terrain_poleward_fraction"],
    "shade": lambda a: max(a["terrain_sunward_shade_fraction"], a["terrain_shadow_fraction"]),
    "image_shadow": lambda a: (
        None if a["terrain_image_shadow_fraction"] is None else min(1.0, 2.0 * a["terrain_image_shadow_fraction"])
    ),
}


def documented_rank(probability: float, attrs: dict, kept: tuple[str, ...] = KEPT_TERMS) -> float:
    """README *Ranking*: probability x (0.2 + 0.8 x mean of the kept terms); the probability itself with none kept."""
    if not kept:
        return probability
    values = [v for v in (DOCUMENTED_TERMS[t](attrs) for t in kept) if v is not None]
    score = sum(values) / len(values) if values else 0.5
    return probability * (0.2 + 0.8 * score)


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
    # rows written before the second stage (no probability, no rank column): ranked by max_probability, and the
    # file gains the rank column, set where terrain scored the row and NULL where it could not
    ranked = read_layer(results, "ice_candidates", ["max_probability", "rank", *NAMES], geometry=False)
    scored = [a for _, a in ranked if a["terrain_score"] is not None]
    assert len(scored) == 3
    for attrs in scored:
        assert attrs["rank"] == attrs["terrain_rank_value"]
        assert attrs["rank"] == pytest.approx(documented_rank(attrs["max_probability"], attrs), rel=1e-12, abs=0)
    assert [a["rank"] for _, a in ranked if a["terrain_score"] is None] == [None, None]


@pytest.mark.parametrize("kept", [KEPT_TERMS, tuple(TERMS)], ids=["kept-terms", "every-term"])
def test_terrain_ranks_by_the_second_stage_probability_and_updates_rank(
    product, tmp_path: Path, monkeypatch, kept: tuple[str, ...]
) -> None:
    """Detect's rows carry the second stage's probability and rank = probability; terrain rewrites rank with it.

    Run with the terms the rule kept and with every term (as if the rule had kept them all), so that the formula is
    checked on real terrain fields whichever terms the measurement keeps.
    """
    monkeypatch.setattr(ranking, "KEPT_TERMS", kept)
    rows = [
        (g, {**a, "probability": 0.97 - 0.2 * i, "rank": 0.97 - 0.2 * i, "max_probability": 0.05})
        for i, (g, a) in enumerate(_rows(product)[:4])
    ]
    schema = [Field("product_id", str), Field("candidate_id", str), Field("max_probability", float)]
    schema += [Field("probability", float), Field("rank", float)]

    def build(gpkg) -> None:
        gpkg.create_layer("ice_candidates", schema, "MULTIPOLYGON", gpkg.add_srs(common_crs()))
        gpkg.insert("ice_candidates", schema, rows)

    results = write_new(tmp_path / "detected.gpkg", build)
    run_terrain(product.dtm_path, product.label_path, tmp_path / "t", candidates=results)
    again = run_terrain(product.dtm_path, product.label_path, tmp_path / "t", candidates=results)
    assert again.candidates_updated == 4  # a re-run ranks from the probability, never from the rank it replaced
    written = read_layer(results, "ice_candidates", ["candidate_id", "probability", "rank", *NAMES], geometry=False)
    by_id = {a["candidate_id"]: a for _, a in written}
    for i in range(3):  # scored: rank = the documented formula of the second stage's probability (not 0.05)
        attrs = by_id[f"c{i}"]
        assert attrs["rank"] == attrs["terrain_rank_value"]
        assert attrs["rank"] == pytest.approx(documented_rank(0.97 - 0.2 * i, attrs, kept), rel=1e-12, abs=0)
        assert attrs["rank"] > 0.05  # more than max_probability could give, whatever the terrain
    # no DTM height under it: rank stays the probability detect gave it
    assert by_id["c3"]["terrain_note"] == "outside DTM" and by_id["c3"]["rank"] == pytest.approx(0.97 - 0.6)


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
        if values is not None and values["terrain_rank_value"] is not None:  # the scan's rows get rank too
            assert attrs["rank"] == values["terrain_rank_value"]
        else:
            assert "rank" not in attrs
    assert list(scratch.iterdir()) == [] and list(tmp_path.iterdir()) == [scratch]
