"""The second stage in the detect flow: fields in the GeoPackage, the threshold, --all-candidates, the model file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from marsice_plugin.detection import DetectOptions, load_stage
from marsice_plugin.errors import ModelError
from marsice_plugin.gpkg import read_layer
from marsice_plugin.patches.model import load_patch_model, patch_model_path, patch_threshold
from marsice_plugin.pipeline import detect

from .conftest import DEMO_MODEL, tiny_product
from .small_rasters import label_free_copy


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The committed tiny product detected twice, outlines searched in every chunk: default and --all-candidates."""
    folder = tmp_path_factory.mktemp("stage")
    product = tiny_product(folder / "p")
    common = {"model_path": DEMO_MODEL, "chunk_size": 256, "search": "all"}
    kept = detect(product.label_path, folder / "kept.gpkg", DetectOptions(**common))
    every = detect(product.label_path, folder / "all.gpkg", DetectOptions(**common, all_candidates=True))
    return kept, every, product


def _rows(result):
    return [attrs for _, attrs in read_layer(result.output, "ice_candidates")]


def test_candidates_carry_real_second_stage_values_in_the_geopackage(runs):
    _, every, _ = runs
    rows = _rows(every)
    assert len(rows) == every.outlined > 0
    probs = np.array([r["probability"] for r in rows])
    assert np.all((probs >= 0) & (probs <= 1)) and probs.std() > 0  # real, varied scores, no placeholder
    for r in rows:
        assert r["chunk_probability"] == pytest.approx(r["max_probability"])
        assert r["rank"] == pytest.approx(r["probability"])  # no DTM: rank is the probability
    assert list(probs) == sorted(probs, reverse=True)  # written best first


def test_default_drops_candidates_under_the_threshold_and_all_candidates_keeps_them(runs):
    kept, every, _ = runs
    threshold = load_stage(None).threshold
    assert kept.patch_threshold == threshold == every.patch_threshold
    all_probs = sorted(r["probability"] for r in _rows(every))
    kept_probs = sorted(r["probability"] for r in _rows(kept))
    assert kept_probs == pytest.approx([p for p in all_probs if p >= threshold], abs=1e-6)
    assert len(kept_probs) < len(all_probs)  # some dropped here, and --all-candidates has them
    assert f"of {every.outlined} bright patches outlined in every chunk; second stage" in kept.summary()
    # the products layer says how the candidates were found, so a results file can be read (and rerun) alike
    [(_, product_row)] = read_layer(kept.output, "products")
    assert product_row["search"] == "all" and product_row["search_threshold"] is None
    assert product_row["outlined"] == every.outlined == len(all_probs)
    assert product_row["patch_model"] == "marsice_patch_64.keras"
    assert product_row["patch_threshold"] == pytest.approx(threshold)


def test_flagged_search_from_a_lower_probability_is_recorded_and_flags_no_chunk_under_the_threshold(tmp_path):
    """The demo model scores the tiny product's chunks 0.75-1.0: at 0.97 half are flagged; searched from 0.7, all."""
    product = tiny_product(tmp_path / "p")
    common = {"model_path": DEMO_MODEL, "chunk_size": 256, "threshold": 0.97}
    base = detect(product.label_path, tmp_path / "base.gpkg", DetectOptions(**common))
    wide = detect(product.label_path, tmp_path / "wide.gpkg", DetectOptions(**common, search_threshold=0.7))
    [(_, base_row)] = read_layer(base.output, "products")
    [(_, wide_row)] = read_layer(wide.output, "products")
    assert (base_row["search"], base_row["search_threshold"]) == ("flagged", 0.97)
    assert (wide_row["search"], wide_row["search_threshold"]) == ("flagged", 0.7)
    assert wide_row["outlined"] > base_row["outlined"]  # more chunks outlined ...
    assert f"of {wide.outlined} bright patches outlined in chunks from 0.70; second stage" in wide.summary()
    assert f"of {base.outlined} bright patches outlined; second stage" in base.summary()  # the default: unsaid
    cnn = [c.cnn_probability for c in wide.chunks]
    assert cnn == [c.cnn_probability for c in base.chunks] and min(cnn) < 0.97 <= max(cnn)
    assert all(c.cnn_probability >= 0.97 for c in wide.above)  # ... none under the threshold flagged for it


def test_kept_candidates_lie_on_the_planted_ice_and_rank_first(runs):
    """The tiny product's planted patches: what the default keeps is on them, and they lead the full list."""
    from marsice_plugin.patches.metrics import average_precision, touched, truth_patches
    from marsice_plugin.product import open_product

    kept, every, product = runs
    with open_product(product.label_path) as opened:
        labels, _ = truth_patches(product.ice, opened.scale_m)
        kept_on = [bool(touched(opened, labels, c.geometry)) for c in kept.candidates]
        every_on = np.array([bool(touched(opened, labels, c.geometry)) for c in every.candidates])
    assert kept_on and all(kept_on)
    ranks = np.array([c.rank for c in every.candidates])
    areas = np.array([c.area_m2 for c in every.candidates])
    assert average_precision(ranks, every_on) > average_precision(areas, every_on)


def test_detect_and_qgis_flags_parse(tmp_path):
    from marsice_plugin.cli import build_parser

    args = build_parser().parse_args(["detect", "p.LBL", "-o", "o.gpkg", "--all-candidates", "--search", "all"])
    assert args.all_candidates is True and args.search == "all" and args.patch_model is None
    args = build_parser().parse_args(["detect", "p.LBL", "-o", "o.gpkg"])
    assert args.all_candidates is False and args.search == "flagged" and args.search_threshold is None
    args = build_parser().parse_args(["detect", "p.LBL", "-o", "o.gpkg", "--search-threshold", "0.4"])
    assert args.search_threshold == 0.4
    args = build_parser().parse_args(["evaluate", "m.keras", "--search-threshold", "0.3"])
    assert args.search_threshold == 0.3


def test_shipped_model_passes_the_safety_check_and_its_card_gives_the_threshold():
    path = patch_model_path()
    model = load_patch_model(path)
    assert tuple(model.input_shape[1:]) == (64, 64, 2)
    assert 0.0 < patch_threshold(path) < 1.0
    # small: it must cost a fraction of detect (three networks of 18,481 parameters since 2026-12-08: the union of a
    # mean of two rendered ones and a real-texture one; bench/inference.py prints its share of detect's time)
    assert model.count_params() < 60_000


def test_bad_second_stage_models_are_refused_with_one_line(tmp_path):
    with pytest.raises(ModelError, match="takes 64x64x2 crops"):
        load_patch_model(DEMO_MODEL)  # a chunk model is not a second-stage model
    copy = tmp_path / "patch.keras"
    shutil.copy(patch_model_path(), copy)
    with pytest.raises(ModelError, match="card has no threshold"):
        patch_threshold(copy)  # no card beside it
    copy.with_suffix(".card.json").write_text(json.dumps({"threshold": 1.5}))
    with pytest.raises(ModelError, match="is not a probability"):
        patch_threshold(copy)
    with pytest.raises(ModelError, match="does not exist"):
        load_patch_model(tmp_path / "missing.keras")


def test_crops_scored_block_by_block_give_the_same_probabilities(runs, monkeypatch):
    """Crops are cut and scored CROP_BLOCK candidates at a time (bounded memory); blocks of 2 give the same values."""
    from marsice_plugin.candidates import Candidate
    from marsice_plugin.patches import stage as stage_module
    from marsice_plugin.product import open_product

    _, every, product = runs
    assert len(every.candidates) >= 3
    patch = load_stage(None, keep_all=True)

    def copies() -> list[Candidate]:
        return [Candidate(**{**vars(c), "probability": None, "rank": None}) for c in every.candidates]

    with open_product(product.label_path) as opened:
        whole = stage_module.score_candidates(opened, copies(), patch)
        monkeypatch.setattr(stage_module, "CROP_BLOCK", 2)
        blocks = stage_module.score_candidates(opened, copies(), patch)
    # the same values up to float32 rounding (TensorFlow's kernels differ by batch size: ~3e-8)
    np.testing.assert_allclose(sorted(c.probability for c in blocks), sorted(c.probability for c in whole), atol=1e-6)
    np.testing.assert_allclose(
        sorted(c.probability for c in whole), sorted(c.probability for c in every.candidates), atol=1e-6
    )


def test_a_search_threshold_above_the_threshold_is_refused_before_scoring(tmp_path, capsys):
    from marsice_plugin.cli import main

    product = tiny_product(tmp_path / "p")
    argv = ["detect", str(product.label_path), "-o", str(tmp_path / "o.gpkg"), "--model", str(DEMO_MODEL)]
    code = main([*argv, "--threshold", "0.5", "--search-threshold", "0.7"])
    err = capsys.readouterr().err
    assert code == 2
    assert "search threshold 0.7 is outside 0..0.5 (the threshold)" in err
    assert not (tmp_path / "o.gpkg").exists()  # refused before anything was scored or written


def _label_free_copy(product, folder, tags: dict[str, str]):
    """The tiny product's 10-bit pixels as a uint16 GeoTIFF without a label, with ``tags``."""
    return label_free_copy(product, folder, tags, "uint16")


def _logged(result_lines: str) -> list[dict]:
    return [json.loads(line) for line in result_lines.splitlines() if line.startswith('{"type": "log"')]


def test_a_raster_without_sun_takes_its_latitudes_typical_sun_and_sun_azimuth_turns_crops_as_its_label(
    tmp_path, monkeypatch
):
    """The second stage turns each crop so the sun is at the top. A label-free GeoTIFF does not say where the sun
    was: detect assumes HiRISE's typical sun at its latitude and warns; where there is none (too few observations)
    it warns that crops are turned as if the sun were in the north; --sun-azimuth gives the label's outcome."""
    import io

    from marsice_plugin.catalogue import sun_prior
    from marsice_plugin.detection import assumed_sun_warning, unknown_sun_warning
    from marsice_plugin.product import open_product
    from marsice_plugin.progress import Reporter

    product = tiny_product(tmp_path / "p")
    common = {"model_path": DEMO_MODEL, "chunk_size": 256, "search": "all", "all_candidates": True}
    labelled = detect(product.label_path, tmp_path / "label.gpkg", DetectOptions(**common))
    [(_, row)] = read_layer(labelled.output, "products")
    own = row["sun_azimuth"]
    assert own is not None and 0 <= own < 360
    bare = _label_free_copy(product, tmp_path / "bare", {})

    sources = {}

    def run(name: str, path, **extra):
        out = io.StringIO()
        found = detect(path, tmp_path / f"{name}.gpkg", DetectOptions(**common, **extra), Reporter("json", out))
        probs = sorted(c.probability for c in found.candidates)
        [(_, products_row)] = read_layer(found.output, "products")
        sources[name] = products_row["sun_source"]
        return probs, products_row["sun_azimuth"], _logged(out.getvalue())

    tagged = _label_free_copy(product, tmp_path / "tagged", {"SUN_AZIMUTH_FROM_NORTH": repr(own)})
    # no sun anywhere: the typical one at the product's latitude, said in a warning, scored as if given by hand
    assumed, assumed_sun, assumed_log = run("latitude", bare)
    with open_product(bare) as opened:
        latitude = opened.center_lonlat()[1]
    prior = sun_prior.typical_sun(latitude)
    assert -60 < latitude < -40 and 290 <= prior.azimuth <= 305  # the paper's band: sun from the west-north-west
    assert assumed_sun == pytest.approx(round(prior.azimuth, 1))
    by_prior, _, _ = run("prior_by_hand", bare, sun_azimuth=assumed_sun)
    np.testing.assert_allclose(assumed, by_prior, atol=1e-6)
    warned = assumed_sun_warning(bare.stem, assumed_sun, latitude, prior.within_deg)
    assert [e["message"] for e in assumed_log if e["level"] == "warning"] == [warned]
    assert f"assumed {assumed_sun:g}°, the typical HiRISE sun at {latitude:.1f}° latitude" in warned
    assert "--sun-azimuth DEG" in warned and "SUN_AZIMUTH_FROM_NORTH" in warned
    # and where the catalogue has too few observations at that latitude, the sun stays unknown: turned by 0
    monkeypatch.setattr(sun_prior, "MIN_OBSERVATIONS", 10**9)
    unknown, unknown_sun, unknown_log = run("unknown", bare)
    monkeypatch.undo()
    given, given_sun, given_log = run("given", bare, sun_azimuth=own)
    expected, _, tagged_log = run("tagged", tagged)
    assert len(given) == len(expected) == len(labelled.candidates) > 0
    np.testing.assert_allclose(given, expected, atol=1e-6)  # the sun given by hand: the tagged raster's scores
    label_scores = sorted(c.probability for c in labelled.candidates)
    np.testing.assert_allclose(given, label_scores, atol=0.05)  # and the label's, as the container allows
    assert abs(assumed_sun - own) < 5  # the typical sun at -50° is 2° from this product's: near the label's scores
    off = {name: np.abs(np.array(probs) - label_scores).mean() for name, probs in (("prior", assumed), ("0", unknown))}
    assert off["prior"] < off["0"] / 2
    assert given_sun == pytest.approx(own)
    assert np.abs(np.array(unknown) - np.array(expected)).max() > 0.05  # turned by 0 instead: other scores
    assert unknown_sun is None
    warning = unknown_sun_warning(bare.stem)
    assert {"type": "log", "level": "warning", "message": warning} in unknown_log
    assert "--sun-azimuth DEG" in warning and "SUN_AZIMUTH_FROM_NORTH" in warning
    assert not [e for e in given_log + tagged_log if e["message"] == warning]
    said = f"sun azimuth {own:g}° from --sun-azimuth (the product does not give it)"
    assert any(said in e["message"] for e in given_log)
    # over a label's own value: logged as an override, and recorded
    turned, turned_sun, turned_log = run("turned", product.label_path, sun_azimuth=(own + 90) % 360)
    assert turned_sun == pytest.approx((own + 90) % 360)
    assert any(f"overrides the product's {own:g}°" in e["message"] for e in turned_log)
    assert np.abs(np.array(sorted(turned)) - np.array(label_scores)).max() > 0.05
    # the label's own pair of azimuths copied into the metadata gives the same sun
    azimuths = {"SUB_SOLAR_AZIMUTH": repr(own + 100.0), "NORTH_AZIMUTH": "100"}
    pair = _label_free_copy(product, tmp_path / "pair", azimuths)
    from_pair, pair_sun, pair_log = run("pair", pair)
    assert pair_sun == pytest.approx(own % 360.0)
    np.testing.assert_allclose(from_pair, expected, atol=1e-6)
    assert not [e for e in pair_log if e["level"] == "warning"]
    # a GeoTIFF export named by its product id takes its observation's sun from the bundled catalogue
    named = _label_free_copy(product, tmp_path / "named", {}).rename(tmp_path / "named" / "ESP_011707_1440_RED.tif")
    from_catalogue, catalogue_sun, catalogue_log = run("catalogue", named)
    by_hand, _, _ = run("by_hand", bare, sun_azimuth=catalogue_sun)
    assert catalogue_sun == pytest.approx(282.6)  # the real observation's, as its label says (282.568)
    np.testing.assert_allclose(from_catalogue, by_hand, atol=1e-6)
    said = "ESP_011707_1440_RED: sun azimuth 282.6° from the bundled catalogue (the product does not give it)"
    assert said in [e["message"] for e in catalogue_log]
    assert not [e for e in catalogue_log if e["level"] == "warning"]
    # the library without an output file resolves the sun as marsice detect does
    from marsice_plugin import api

    frames = api.detect(bare, model=DEMO_MODEL, chunk_size=256, search="all", all_candidates=True, sun_azimuth=own)
    assert frames["products"]["sun_source"].tolist() == ["option"]
    np.testing.assert_allclose(sorted(frames["ice_candidates"]["probability"]), given, atol=1e-6)
    # the products layer says where each run's sun came from
    assert row["sun_source"] == "label"
    assert sources == {
        "latitude": "latitude",
        "prior_by_hand": "option",
        "unknown": None,
        "given": "option",
        "tagged": "metadata",
        "turned": "option",
        "pair": "metadata",
        "catalogue": "catalogue",
        "by_hand": "option",
    }
    for wrong in (float("nan"), 400.0, -5.0):  # refused as terrain refuses it, before anything is scored
        with pytest.raises(ValueError, match=r"--sun-azimuth .* is out of range: give degrees clockwise from north"):
            detect(product.label_path, tmp_path / "wrong.gpkg", DetectOptions(**common, sun_azimuth=wrong))
    assert not (tmp_path / "wrong.gpkg").exists()
