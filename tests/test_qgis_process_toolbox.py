"""The training tools, the workflow and the ``.model3`` graphical model through ``qgis_process.bin``.

Detect, search, download and terrain already run through ``qgis_process`` in test_qgis_plugin.py,
test_catalogue_qgis.py and test_terrain_qgis.py; this module covers the rest of the toolbox the same
way, headless (QGIS 3.22 takes ``NAME=VALUE`` after ``--``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import rasterio

from marsice_plugin.gpkg import register_functions
from marsice_plugin.model_registry import card_threshold, default_model_path

from .conftest import REPO, TinyProduct, tiny_product

pytestmark = pytest.mark.qgis

QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")
MODEL3 = REPO / "processing" / "detect_and_rank.model3"
_VENV_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PROJ_LIB", "PROJ_DATA", "GDAL_DATA")

if not QGIS_PROCESS.exists():
    pytest.skip(f"{QGIS_PROCESS} is not installed", allow_module_level=True)


def qgis(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _VENV_VARIABLES and not k.startswith("MARSICE_")}
    runtime = home / "xdg-runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(home), XDG_RUNTIME_DIR=str(runtime), QGIS_PLUGINPATH=str(REPO))
    return subprocess.run([str(QGIS_PROCESS), *args], env=env, capture_output=True, text=True, timeout=timeout)


def run_json(home: Path, algorithm: str, *params: str) -> dict:
    proc = qgis(home, "--json", "run", algorithm, "--", *params)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("qgis-toolbox")
    proc = qgis(home, "plugins", "enable", "marsice_plugin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return home


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> TinyProduct:
    """The committed 512 × 384 px product with its DTM, in a folder of its own (QGIS may write beside it)."""
    return tiny_product(tmp_path_factory.mktemp("product"))


def test_tile_label_train_and_evaluate(home: Path, product: TinyProduct, tmp_path: Path) -> None:
    tiled = run_json(
        home, "marsice:tile", f"INPUT={product.label_path}", "SIZE=256", "OVERLAP=0", f"OUTPUT={tmp_path / 'tiles'}"
    )
    results = tiled["results"]
    index = Path(results["INDEX"])
    assert results["CHUNKS"] == 4 and index.parent == tmp_path / "tiles"  # 2 x 2 tiles of the 512 x 384 px product
    assert len(list(Path(results["TILES"]).glob("*.tif"))) == 4 - results["SKIPPED"] >= 3

    # what a geologist does in QGIS: add a label column to the tile index and fill it in (with the SQL functions
    # the R-tree index's triggers call, which QGIS's GDAL provides)
    with register_functions(sqlite3.connect(index)) as db:
        db.execute("ALTER TABLE tiles ADD COLUMN ice INTEGER")
        db.execute("UPDATE tiles SET ice = fid % 2 WHERE NOT skipped")
        (labelled,) = db.execute("SELECT count(*) FROM tiles WHERE ice IS NOT NULL").fetchone()

    model = tmp_path / "model" / "from_tiles.keras"
    trained = run_json(
        home, "marsice:train", f"TILE_INDEX={index}", "LABEL_FIELD=ice", "INPUT_SIZE=64", "EPOCHS=1",
        "BATCH_SIZE=4", "AUGMENT=0", f"OUTPUT={model}",
    )  # fmt: skip
    assert trained["results"]["OUTPUT"] == str(model) and model.stat().st_size > 10_000
    assert Path(trained["results"]["CURVES"]).is_file()
    card = json.loads(model.with_suffix(".card.json").read_text())
    assert str(index) in json.dumps(card)

    report = tmp_path / "report.json"
    evaluated = run_json(
        home, "marsice:evaluate", f"MODEL={model}", f"TILE_INDEX={index}", "LABEL_FIELD=ice", f"OUTPUT={report}"
    )
    figures = evaluated["results"]
    written = json.loads(report.read_text())
    assert written["chunks"]["n"] == labelled
    assert figures["ACCURACY"] == pytest.approx(written["chunks"]["accuracy"])
    assert figures["BASELINE_ROC_AUC"] == pytest.approx(written["baseline_roc_auc"])


def test_workflow_dry_run_lists_without_writing(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "scan.gpkg"
    proc = qgis(
        home, "--json", "run", "marsice:scan", "--",
        "LAT_MIN=-60", "LAT_MAX=-40", "LS_FROM=140", "LS_TO=200", "SOURCE=2", "LIMIT=2", "DRY_RUN=true",
        f"OUTPUT={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    answer = json.loads(proc.stdout)
    assert answer["results"]["PRODUCTS"] == 2 and answer["results"]["DOWNLOAD_GB"] == 1.382
    log = "\n".join(answer["log"]["info"])
    assert "dry run: 2 products, 4 files, 1.382 GB (1.382 GB of it estimated from image sizes, 4 files)" in log
    assert ".JP2: ~" in log  # each estimated size marked
    assert list(tmp_path.iterdir()) == []


def test_workflow_searches_downloads_and_detects_for_real(home: Path, product: TinyProduct, tmp_path: Path) -> None:
    """The one-click workflow end to end: ODE (a stand-in on 127.0.0.1 in ODE's real format) → download into the
    cache → detect on a one-worker local Dask cluster → results GeoPackage, with the figures QGIS shows."""
    from .catalogue_http import LocalServer, ode_record, real_products

    pid = product.product_id  # the committed product: -50.0°N 30.0°E, Ls 170°
    out, cache = tmp_path / "found.gpkg", tmp_path / "cache"
    with LocalServer() as server:
        files = {p.name: p.read_bytes() for p in (product.image_path, product.label_path)}
        server.files.update(files)
        record = ode_record(real_products()[1], pid, -50.0, 30.0, 170.0, server.base, files)
        server.products.append(record)
        answer = run_json(
            home, "marsice:scan",
            "LAT_MIN=-60", "LAT_MAX=-40", "LS_FROM=140", "LS_TO=200", "SOURCE=1", f"ODE_URL={server.base}/many/live2/",
            f"CACHE={cache}", "WORKERS=1", "TERRAIN=false", "DRY_RUN=false", f"OUTPUT={out}",
        )  # fmt: skip
        served = {path for path, _, _ in server.requests if path.startswith("/files/")}
        assert served >= {f"/files/{name}" for name in files}  # the JP2 and its label really came over HTTP
    results = answer["results"]
    assert (results["PRODUCTS"], results["COMMITTED"], results["FAILED"]) == (1, 1, 0)
    assert results["OUTPUT"] == str(out)
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT product_id, chunks_total FROM products").fetchall() == [(pid, 1)]
        n_chunks, scored = db.execute("SELECT count(*), count(probability) FROM chunks").fetchone()
        assert n_chunks == 1 and scored == 1
        assert db.execute("SELECT count(*) FROM ice_candidates").fetchone()[0] == results["CANDIDATES"]
    assert not list(cache.rglob("*.JP2"))  # raw files dropped once the product was committed


def test_graphical_model_detects_then_ranks_with_terrain(home: Path, product: TinyProduct, tmp_path: Path) -> None:
    # (``qgis_process.bin help MODEL.model3`` crashes QGIS 3.22 itself; running the model is the load test)
    results = tmp_path / "results.gpkg"
    answer = run_json(
        home, str(MODEL3), f"product={product.label_path}", f"dtm={product.dtm_path}",
        f"detect:results={results}", f"terrain:terrain={tmp_path / 'terrain'}",
    )  # fmt: skip
    assert answer["results"] == {"detect:results": str(results), "terrain:terrain": str(tmp_path / "terrain")}
    log = "\n".join(answer["log"]["info"])
    assert log.index("marsice detect") < log.index("marsice terrain") and "Executed 2 algorithms" in log
    with sqlite3.connect(results) as db:
        rows = db.execute("SELECT probability, terrain_rank_value, rank FROM ice_candidates").fetchall()
        # the model's threshold left empty: detect ran at the shipped model card's
        assert db.execute("SELECT threshold FROM products").fetchall() == [(card_threshold(default_model_path()),)]
    # terrain ranked every candidate from the second stage's probability and wrote that order into rank
    assert rows and all(
        value is not None and 0.0 <= value <= probability and rank == value for probability, value, rank in rows
    )
    with rasterio.open(tmp_path / "terrain" / f"{product.product_id}_slope.tif") as slope:
        # on the DTM's grid (terrain.dtmgrid): its 128 x 96 posts under the 512 x 384 image, one more each way
        # where the sub-post co-registration shift moves the grid
        assert (slope.width, slope.height) == (129, 97)
