"""The frozen evaluation set and ``marsice evaluate``."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from marsice_plugin.cnn.training_data import EVALUATION_SEED_BASE
from marsice_plugin.evaluation import load_spec

from .conftest import DEMO_MODEL


def test_evaluation_set_is_frozen_and_disjoint_from_training():
    spec = load_spec()
    assert spec["name"] == "evaluation_set_v1" and spec["frozen"] == "2026-11-28"
    seeds = [p["seed"] for p in spec["products"]]
    assert len(seeds) == len(set(seeds)) == 12
    assert min(seeds) >= EVALUATION_SEED_BASE
    assert sum(p["with_planted_ice"] for p in spec["products"]) == 6
    for p in spec["products"]:
        assert 290 <= p["scene"]["sun_azimuth"] <= 303  # the paper's band
        assert -60 <= p["geometry"]["center_latitude"] <= -40
        assert 140 <= p["geometry"]["solar_longitude"] <= 200


def test_cut_patch_set_plants_as_many_cut_as_whole_patches():
    """evaluation_set_v2 exists to measure recall on patches the paper's grid cuts: each ice product holds
    two patches across a grid line and two inside a chunk (the renderer's truth says so), seeds disjoint."""
    from marsice_plugin.evaluation import patch_recall
    from marsice_plugin.synthetic.scene import SceneConfig, render

    v1, v2 = load_spec(), load_spec("evaluation_set_v2")
    seeds = [p["seed"] for p in v2["products"]]
    assert min(seeds) >= EVALUATION_SEED_BASE and not set(seeds) & {p["seed"] for p in v1["products"]}
    assert [p["with_planted_ice"] for p in v2["products"]] == [True] * 6 + [False] * 2
    first = v2["products"][0]
    settings = {**v2["scene_defaults"], **first["scene"], "seed": first["seed"]}
    settings["ice_contrast"] = tuple(settings["ice_contrast"])
    settings["ice_at"] = tuple(tuple(patch) for patch in settings["ice_at"])
    scene = render(SceneConfig(**settings))
    counts = patch_recall(scene.ice, [], 0.6, 1024)
    assert counts == {"cut": {"found": 0, "patches": 2}, "whole": {"found": 0, "patches": 2}}


def test_larger_set_v3_is_v1s_kind_of_products_as_its_script_draws_them(capsys):
    """evaluation_set_v3 is v1's kind of products, five times as many, so its figures carry narrower
    intervals: the frozen file is exactly what bench/make_evaluation_set_v3.py draws, its seeds are
    reserved and disjoint from v1 and v2, and every product lies in v1's ranges."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "make_evaluation_set_v3.py"
    module_spec = importlib.util.spec_from_file_location("make_evaluation_set_v3", script)
    maker = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(maker)
    maker.main()
    v1, v2, v3 = load_spec(), load_spec("evaluation_set_v2"), load_spec("evaluation_set_v3")
    assert json.loads(capsys.readouterr().out) == v3
    seeds = [p["seed"] for p in v3["products"]]
    assert len(set(seeds)) == 60 and min(seeds) >= EVALUATION_SEED_BASE
    assert not set(seeds) & {p["seed"] for p in v1["products"] + v2["products"]}
    assert sum(p["with_planted_ice"] for p in v3["products"]) == 30
    assert v3["scene_defaults"] == v1["scene_defaults"]
    for p in v3["products"]:
        scene = p["scene"]
        assert set(scene) == set(v1["products"][0]["scene"])  # the same knobs as v1, nothing else
        assert 290 <= scene["sun_azimuth"] <= 303 and scene["scale_m"] in (0.25, 0.5)
        assert (2 <= scene["n_ice_boulder"] <= 4) if p["with_planted_ice"] else scene["n_ice_boulder"] == 0
        assert -60 <= p["geometry"]["center_latitude"] <= -40
        assert 140 <= p["geometry"]["solar_longitude"] <= 200


def test_evaluate_cli_reports_model_and_baseline(marsice_cli, tmp_path):
    out = tmp_path / "report.json"
    png = tmp_path / "pr.png"
    proc = marsice_cli(
        "evaluate",
        str(DEMO_MODEL),
        "--cache",
        str(tmp_path / "cache"),
        "--limit",
        "2",
        "-o",
        str(out),
        "--pr-curve",
        str(png),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    chunks, images = report["chunks"], report["images"]
    # two 2048 px products at 0.25-0.5 m/px give 4 chunks each, minus the ones skipped for no-data
    assert 4 <= chunks["n"] <= 8
    assert chunks["tp"] + chunks["fp"] + chunks["tn"] + chunks["fn"] == chunks["n"]
    assert images["count"] == 2 and images["with_ice"] == 1
    assert sum(images["categories"].values()) == 2
    # intervals: ROC-AUC resampled by product, image precision/NPV from their counts (Wilson)
    assert chunks["roc_auc_ci95_resamples"] == "products"
    lo, hi = chunks["roc_auc_ci95"]
    assert (lo != lo and hi != hi) or 0.0 <= lo <= chunks["roc_auc"] <= hi <= 1.0
    assert images["flagged"] + images["called_ice_free"] == 2
    assert images["called_ice_free_right"] <= images["called_ice_free"]
    if images["called_ice_free"]:
        lo, hi = images["npv_ci95"]
        assert lo <= images["npv"] <= hi and hi - lo > 0.5  # one or two images show little
        assert f"npv={images['npv']:.3f} ({images['called_ice_free_right']}/{images['called_ice_free']}; 95% " in (
            proc.stdout
        )
    assert 0.0 <= report["baseline_roc_auc"] <= 1.0
    assert "not comparable" in report["paper_context"]
    modes = report["failure_modes"]
    assert modes["false_flags_caused_by_hot_pixels"] <= modes["false_flags_with_hot_pixels"] <= chunks["fp"]
    assert modes["patches_cut_by_grid"]["patches"] + modes["patches_inside_a_chunk"]["patches"] > 0
    outlines = report["candidates"]
    assert outlines["on_ice"] <= outlines["candidates"] and outlines["patches_outlined"] <= outlines["patches"]
    assert outlines["patches"] > 0 and "candidate outlines:" in proc.stdout
    assert "patch recall cut by the grid" in proc.stdout
    stage = report["second_stage"]  # each polygon-level figure with its Wilson interval, in the JSON and the text
    assert (stage["search"], stage["search_threshold"]) == ("flagged", report["threshold"])  # as detect resolved it
    lo, hi = stage["patch_recall_ci95"]
    assert lo <= stage["patch_recall"] <= hi
    assert f"found {stage['patches_found']}/{stage['patches']} (recall {stage['patch_recall']:.3f}, 95% {lo:.3f}-" in (
        proc.stdout
    )
    assert "brightness baseline: roc_auc=" in proc.stdout
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (500, 400)


def test_patch_recall_separates_patches_cut_by_the_paper_grid():
    from marsice_plugin.evaluation import patch_recall
    from marsice_plugin.grid import Window
    from marsice_plugin.result_layers import ChunkScore

    ice = np.zeros((2048, 2048), bool)
    ice[500:510, 1015:1035] = True  # 200 px, cut by the column boundary at 1024
    ice[100:110, 100:110] = True  # 100 px inside chunk (0, 0)
    ice[1500:1503, 1500:1503] = True  # 9 px inside chunk (1, 1)

    def score(row_off, col_off, p):
        return ChunkScore(row_off // 1024, col_off // 1024, Window(col_off, row_off, 1024, 1024), p, False, "", 0.0)

    # the paper's tiling, only chunk (0, 0) flagged: the cut patch has 90 px there (>= 16): found
    paper = [score(0, 0, 0.9), score(0, 1024, 0.1), score(1024, 0, 0.1), score(1024, 1024, 0.2)]
    assert patch_recall(ice, paper, 0.6, 1024) == {
        "cut": {"found": 1, "patches": 1},
        "whole": {"found": 1, "patches": 2},
    }
    # the tiny patch is found with all of its 9 px; below the threshold nothing is found
    assert patch_recall(ice, [score(1024, 1024, 0.95)], 0.6, 1024)["whole"] == {"found": 1, "patches": 2}
    assert patch_recall(ice, [score(1024, 1024, 0.5)], 0.6, 1024)["whole"]["found"] == 0
    # a flagged chunk holding 2 columns (20 px) of the cut patch finds it; 1 column (10 px) does not
    assert patch_recall(ice, [score(0, 1033, 0.9)], 0.6, 1024)["cut"]["found"] == 1
    assert patch_recall(ice, [score(0, 1034, 0.9)], 0.6, 1024)["cut"]["found"] == 0


def test_evaluate_labelled_folders(marsice_cli, tmp_path):
    rng = np.random.default_rng(2)
    for label in (0, 1):
        (tmp_path / "d" / str(label)).mkdir(parents=True)
        for i in range(3):
            arr = (rng.random((256, 256)) * 60 + 60).astype(np.uint8)
            if label:
                arr[100:130, 100:130] = 250  # a bright patch
            Image.fromarray(arr).save(tmp_path / "d" / str(label) / f"{i}.png")
    out = tmp_path / "r.json"
    proc = marsice_cli("evaluate", str(DEMO_MODEL), str(tmp_path / "d"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["chunks"]["n"] == 6 and report["chunks"]["positives"] == 3
    assert report["evaluation_set"] == str(tmp_path / "d") and "images" not in report
    assert report["chunks"]["roc_auc_ci95_resamples"] == "chunks"  # folders name no products
    assert "resampling chunks" in proc.stdout
    assert report["baseline_roc_auc"] == 1.0  # the bright squares stand far above their chunks' medians


def test_hot_pixel_free_twin_differs_only_at_the_hot_pixels(tmp_path):
    """The twin that tells a hot-pixel false flag from any other is the same product without its hot pixels."""
    from marsice_plugin.evaluation import render_set, render_without_hot_pixels

    spec = load_spec()
    spec = {**spec, "products": spec["products"][1:2]}  # one ice-free product with 8 hot pixels planted
    (sample,) = render_set(spec, tmp_path)
    twin = render_without_hot_pixels(spec, spec["products"][0], tmp_path)
    hot = sample.scene.hot
    assert hot.sum() > 0 and not twin.scene.hot.any()
    np.testing.assert_array_equal(twin.scene.dn[~hot], sample.scene.dn[~hot])
    assert (twin.scene.dn[hot] != sample.scene.dn[hot]).mean() > 0.9
    assert twin.product_id == sample.product_id and twin.label_path != sample.label_path


def test_flag_caused_by_hot_pixels_is_counted_only_when_the_twin_is_not_flagged(tmp_path):
    from marsice_plugin.cnn.model import load_model
    from marsice_plugin.detection import DetectOptions
    from marsice_plugin.evaluation import _flags_caused_by_hot_pixels

    spec = load_spec()
    entry = spec["products"][1]
    keys = [(0, 0), (1, 1)]
    assert _flags_caused_by_hot_pixels(spec, entry, tmp_path, None, DetectOptions(), []) == 0
    model = load_model(DEMO_MODEL)
    high = _flags_caused_by_hot_pixels(spec, entry, tmp_path, model, DetectOptions(threshold=0.0, overlap=0), keys)
    low = _flags_caused_by_hot_pixels(spec, entry, tmp_path, model, DetectOptions(threshold=1.01, overlap=0), keys)
    assert (high, low) == (0, 2)  # the twin is flagged at threshold 0 (not caused), never at 1.01 (caused)


def test_candidate_truth_counts_outlines_on_planted_ice(tmp_path):
    """The polygon-level figures: a bright planted patch is outlined and counted on ice; no flag, no outline."""
    from marsice_plugin.cnn.model import load_model
    from marsice_plugin.detection import DetectOptions, detections_from_scores, score_chunks
    from marsice_plugin.evaluation import candidate_truth
    from marsice_plugin.product import open_product
    from marsice_plugin.progress import Reporter
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    config = SceneConfig(
        width=1024, height=1024, seed=31, n_craters=0, n_boulders=40, polygons=False, n_ice_boulder=0,
        n_ice_crater=0, n_dust=0, n_hot_special=0, n_hot_ordinary=0, nodata_margin=0.0,
        ice_at=((512.0, 512.0, 6.0, 1.5),),
    )  # fmt: skip
    sample = write_sample_product(tmp_path, config)
    with open_product(sample.label_path) as product:
        scores = score_chunks(product, load_model(DEMO_MODEL), DetectOptions(overlap=0), Reporter("quiet"))
        every = detections_from_scores(product, scores, 0.0).candidates  # every chunk flagged
        none = detections_from_scores(product, scores, 1.01).candidates
        flagged = candidate_truth(product, sample.scene.ice, every)
        unflagged = candidate_truth(product, sample.scene.ice, none)
    assert flagged["patches"] == unflagged["patches"] == 1
    assert flagged["patches_outlined"] == 1 and 1 <= flagged["on_ice"] <= flagged["candidates"]
    assert unflagged == {"candidates": 0, "on_ice": 0, "patches": 1, "patches_outlined": 0}
