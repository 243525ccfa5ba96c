"""The threshold a run flags chunks at: given, else the model card's (chosen on tuning products), else the paper's
0.6; the same rule for detect, scan and evaluate, recorded in the results."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3

import pytest

from marsice_plugin.detect_defaults import DEFAULT_THRESHOLD
from marsice_plugin.detection import DetectOptions
from marsice_plugin.errors import ModelError
from marsice_plugin.model_registry import card_threshold, model_threshold
from marsice_plugin.pipeline import detect

from .conftest import DEMO_MODEL, REPO


def test_card_threshold_is_the_cards_else_the_papers_and_refuses_a_bad_card(tmp_path):
    model = tmp_path / "m.keras"
    assert card_threshold(model) == DEFAULT_THRESHOLD == 0.6  # no card
    assert card_threshold(None) == 0.6
    (tmp_path / "m.card.json").write_text(json.dumps({"model": "m.keras"}))
    assert card_threshold(model) == 0.6  # a card that names none
    (tmp_path / "m.card.json").write_text(json.dumps({"model": "m.keras", "threshold": 0.35}))
    assert card_threshold(model) == 0.35
    for bad in ("0.35", 1.5, -0.1, True, None):
        (tmp_path / "m.card.json").write_text(json.dumps({"threshold": bad}))
        with pytest.raises(ModelError, match="threshold must be a number from 0 to 1"):
            card_threshold(model)
    (tmp_path / "m.card.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable model card"):
        card_threshold(model)


def test_model_threshold_prefers_the_one_given_and_checks_it(tmp_path):
    model = tmp_path / "m.keras"
    (tmp_path / "m.card.json").write_text(json.dumps({"threshold": 0.35}))
    assert model_threshold(None, model) == 0.35
    assert model_threshold(0.8, model) == 0.8
    assert model_threshold(0.0, model) == 0.0  # 0 is a threshold, not "unset"
    with pytest.raises(ValueError, match="within 0..1"):
        model_threshold(1.2, model)


@pytest.mark.parametrize("name", ["marsice_ensemble_512_level1", "marsice_xception_256_level2"])
def test_the_shipped_models_carry_their_tuned_threshold_and_how_it_was_chosen(name):
    """The default model and --fast's carry the threshold bench/choose_threshold.py chose on tuning products, and the
    file of figures it was chosen from, which the rule reproduces."""
    card = json.loads((REPO / "models" / f"{name}.card.json").read_text())
    assert card_threshold(REPO / "models" / f"{name}.keras") == card["threshold"]
    chosen = card["threshold_chosen"]
    assert "choose_threshold.py" in chosen["how"] and "no evaluation set" in chosen["tuning_products"]
    tuning = json.loads((REPO / "models" / chosen["file"]).read_text())
    assert tuning["chosen"] == card["threshold"]
    # the rule: where real ice-free tuning tiles were scored, the fewest of them flagged among thresholds with image
    # precision and recall >= 0.9; else the best image NPV among thresholds with precision >= 0.9, highest on a tie
    allowed = [r for r in tuning["rows"] if r["precision"] >= 0.9]
    finding = [r for r in allowed if "real_flagged" in r and r["tp"] / (r["tp"] + r["fn"]) >= 0.9]
    if finding:
        fewest = min(r["real_flagged"] for r in finding)
        assert card["threshold"] == max(r["threshold"] for r in finding if r["real_flagged"] == fewest)
        assert "real_flagged_at_threshold" in chosen
    else:
        best = max(r["npv"] for r in allowed)
        assert card["threshold"] == max(r["threshold"] for r in allowed if r["npv"] == best)
    assert chosen["at_0.6"]["image_npv"] == "{tn}/{n}".format(
        **next({"tn": r["tn"], "n": r["tn"] + r["fn"]} for r in tuning["rows"] if r["threshold"] == 0.6)
    )


def test_detect_flags_at_the_cards_threshold_unless_told(small_product, tmp_path, marsice_cli):
    """A card threshold below every chunk's probability flags them all; --threshold above all flags none, and
    the products layer records the threshold each run used."""
    model = tmp_path / "m.keras"
    shutil.copy(DEMO_MODEL, model)
    (tmp_path / "m.card.json").write_text(json.dumps({"model": "m.keras", "threshold": 0.0}))
    # 256-px chunks (the model's input) with the default overlap: 3 x 2 chunks over the 512 x 384 px product
    result = detect(small_product.label_path, tmp_path / "a.gpkg", DetectOptions(model_path=model, chunk_size=256))
    scored = [c for c in result.chunks if c.probability is not None]
    assert result.threshold == 0.0 and len(result.above) == len(scored) > 1
    with sqlite3.connect(tmp_path / "a.gpkg") as db:
        assert db.execute("SELECT threshold, chunks_above FROM products").fetchall() == [(0.0, len(scored))]
    done = marsice_cli("detect", str(small_product.label_path), "-o", str(tmp_path / "b.gpkg"), "--model", str(model),
                       "--chunk-size", "256", "--threshold", "1.0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "b.gpkg") as db:
        threshold, above = db.execute("SELECT threshold, chunks_above FROM products").fetchone()
    assert threshold == 1.0 and above == sum(c.probability >= 1.0 for c in scored)


def test_scan_reads_the_models_card_threshold_before_searching(tmp_path, marsice_cli):
    """scan takes its threshold from the model's card as detect does: a card with a broken threshold stops it
    at once with the card's message, before any search or download, and --threshold overrides the card."""
    model = tmp_path / "m.keras"
    shutil.copy(DEMO_MODEL, model)
    (tmp_path / "m.card.json").write_text(json.dumps({"model": "m.keras", "threshold": 7}))
    # --limit 1: a dry run over the whole band works through thousands of bundled products (about 10 minutes here)
    args = ["scan", "--lat", "-60", "-40", "--ls", "140", "200", "--source", "bundled", "--dry-run", "--no-terrain",
            "--limit", "1", "--model", str(model), "--cache", str(tmp_path / "cache"), "-o",
            str(tmp_path / "scan.gpkg")]  # fmt: skip
    done = marsice_cli(*args)
    assert done.returncode != 0 and "threshold must be a number from 0 to 1, not 7" in done.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "scan.gpkg").exists()
    assert marsice_cli(*args, "--threshold", "0.5").returncode == 0, done.stderr


def test_site_plots_draw_the_threshold_the_results_were_made_with(tmp_path, monkeypatch):
    """The dashed line of a site's probability plot is the runs' threshold (from the products layer), the
    paper's 0.6 only when the results do not say."""
    from marsice_plugin.sites import plots
    from marsice_plugin.sites.build import build_sites

    from .test_sites import write_catalogue, write_results

    drawn: list[float] = []

    def record(site_id, rows, path, threshold=0.6):
        drawn.append(threshold)
        return path

    monkeypatch.setattr(plots, "plot_site", record)
    results = write_results(tmp_path / "results.gpkg")
    catalogue = write_catalogue(tmp_path / "footprints.gpkg")
    build_sites([results], tmp_path / "a.gpkg", footprints=catalogue, plots_dir=tmp_path / "plots")
    assert drawn and set(drawn) == {0.6}  # the products layer's threshold is empty
    from marsice_plugin.gpkg import connect  # has the SQL functions the R-tree triggers call, as QGIS's GDAL does

    with contextlib.closing(connect(results, read_only=False)) as db:
        db.execute("UPDATE products SET threshold = 0.35")
    drawn.clear()
    build_sites([results], tmp_path / "b.gpkg", footprints=catalogue, plots_dir=tmp_path / "plots")
    assert drawn and set(drawn) == {0.35}
