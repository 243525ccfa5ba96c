"""The frozen evaluation set and ``marsice evaluate``."""

from __future__ import annotations

import json

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
    assert 0.0 <= report["baseline_roc_auc"] <= 1.0
    assert "not comparable" in report["paper_context"]
    assert "brightness baseline: roc_auc=" in proc.stdout
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (500, 400)
