"""The whole MarsIce toolbox through ``processing.run`` in one real headless QGIS 3.22.

QGIS never runs inside pytest (whose process holds TensorFlow and rasterio's own GDAL): one QGIS
subprocess loads the plugin the way QGIS does (``classFactory(iface).initProcessing()``), runs every
algorithm on the committed tiny product, loads the detection results as the Processing dialog does,
renders them over the image, cancels a run and feeds it bad inputs, and prints one JSON object that the
tests below check. One QGIS start and one child per algorithm keep this module near 60 s.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyproj
import pytest
from PIL import Image

from .catalogue_http import LocalServer, file_bytes, real_products, southern_product
from .conftest import REPO, run_qgis_python, tiny_product

pytestmark = pytest.mark.qgis

if not Path("/usr/bin/qgis_process.bin").exists():
    pytest.skip("QGIS is not installed", allow_module_level=True)

#: Every algorithm of the provider (Site history is registered when its module is there).
EXPECTED = {
    "marsice:search": ("Search HiRISE products", "Catalogue"),
    "marsice:download": ("Download HiRISE products", "Catalogue"),
    "marsice:detect": ("Detect ice patches", "Detection"),
    "marsice:terrain": ("Terrain attributes", "Detection"),
    "marsice:tile": ("Tile product", "Training and evaluation"),
    "marsice:train": ("Train model", "Training and evaluation"),
    "marsice:evaluate": ("Evaluate model", "Training and evaluation"),
    "marsice:scan": ("Find ice patches (workflow)", "Workflows"),
}
if (REPO / "marsice_plugin" / "qgisplugin" / "algorithms" / "site_history.py").exists():
    EXPECTED["marsice:site_history"] = ("Site history", None)
    EXPECTED["marsice:export_sites"] = ("Export sites", "Sites and targets")

#: A stand-in for the venv's python: appends its argv to $FAKE_MARSICE_RECORD and reports a result.
FAKE_CLI = r"""#!/usr/bin/python3
import json, os, sys
argv = sys.argv[5:]  # after -m marsice_plugin --progress json
with open(os.environ["FAKE_MARSICE_RECORD"], "a") as record:
    record.write(json.dumps(argv) + "\n")
outputs = {"MODEL": argv[argv.index("-o") + 1]} if argv[0] == "train" else {}
print(json.dumps({"type": "progress", "percent": 50.0, "message": "half way"}), flush=True)
print(json.dumps({"type": "result", "outputs": outputs, "summary": "recorded"}), flush=True)
"""

SCRIPT = r'''
import os
import shutil
import time
from pathlib import Path

sys.path.insert(0, "/usr/share/qgis/python/plugins")
sys.path.insert(0, P["repo"])
from processing.core.Processing import Processing
from qgis.core import (
    QgsLayerTreeGroup, QgsMapRendererParallelJob, QgsMapSettings, QgsProcessingContext, QgsProcessingException,
    QgsProcessingFeedback, QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

Processing.initialize()
import processing
import marsice_plugin

plugin = marsice_plugin.classFactory(None)
plugin.initProcessing()
registry = QgsApplication.processingRegistry()
provider = registry.providerById("marsice")
out = Path(P["out"])
R = {"seconds": {}}


def run(alg_id, params, load=False, feedback=None, key=None):
    start = time.time()
    try:
        fn = processing.runAndLoadResults if load else processing.run
        return fn(alg_id, params, feedback=feedback or QgsProcessingFeedback())
    finally:
        R["seconds"][key or alg_id] = round(time.time() - start, 2)


def failure(alg_id, params):
    try:
        run(alg_id, params, key="failure")
    except QgsProcessingException as exc:
        return str(exc)
    return None


def children(marker):
    """Live MarsIce children whose command line mentions ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and "marsice_plugin" in cmd:
                pids.append(int(entry.name))
    return pids


def symbol_colour(layer):
    renderer = layer.renderer()
    if renderer.type() != "singleSymbol":
        return None
    return renderer.symbol().symbolLayer(0).strokeColor().name()


R["provider"] = {"name": provider.name(), "icon": not provider.icon().isNull()}
R["algorithms"] = {
    a.id(): {
        "name": a.displayName(), "group": a.group(), "help": a.shortHelpString(),
        "icon": not a.icon().isNull() and os.path.isfile(a.svgIconPath()),
    }
    for a in provider.algorithms()
}

# -- detect, loaded into the project as the Processing dialog does -------------------------------
detect_gpkg = out / "detect" / "results.gpkg"
detect_gpkg.parent.mkdir()
res = run(
    "marsice:detect",
    {"INPUT": P["label"], "THRESHOLD": 0.0, "OUTPUT": str(detect_gpkg), "QUICKLOOK": str(out / "detect" / "ql.png")},
    load=True,
)
R["detect"] = {"OUTPUT": res["OUTPUT"], "QUICKLOOK": res["QUICKLOOK"], "PROBABILITY": res["PROBABILITY"]}
R["tree"] = []
for child in QgsProject.instance().layerTreeRoot().children():
    entry = {"name": child.name(), "group": isinstance(child, QgsLayerTreeGroup), "layers": []}
    for node in child.children() if entry["group"] else []:
        layer = node.layer()
        vector = isinstance(layer, QgsVectorLayer)  # the probability raster loads into the group too
        entry["layers"].append({
            "name": node.name(), "source": layer.source(), "valid": layer.isValid(),
            "count": layer.featureCount() if vector else None, "crs_valid": layer.crs().isValid(),
            "crs_wkt": layer.crs().toWkt(), "renderer": layer.renderer().type(),
            "colour": symbol_colour(layer) if vector else None,
        })
    R["tree"].append(entry)

# -- the styled results drawn over the image ------------------------------------------------------
loaded = {layer.name(): layer for layer in QgsProject.instance().mapLayers().values()}
candidates, chunks = loaded["Ice candidates"], loaded["Chunk ice probability"]
image = QgsRasterLayer(P["label"], "image", "gdal")
settings = QgsMapSettings()
settings.setLayers([candidates, chunks, image])
settings.setDestinationCrs(candidates.crs())
extent = QgsRectangle(chunks.extent())
extent.scale(1.05)
settings.setExtent(extent)
settings.setOutputSize(QSize(800, 800))
settings.setBackgroundColor(QColor(0, 0, 0))
job = QgsMapRendererParallelJob(settings)
job.start()
job.waitForFinished()
png = out / "render.png"
job.renderedImage().save(str(png), "PNG")
to_pixel = settings.mapToPixel()
boxes = []
for feature in candidates.getFeatures():
    box = feature.geometry().boundingBox()
    a, b = to_pixel.transform(box.xMinimum(), box.yMaximum()), to_pixel.transform(box.xMaximum(), box.yMinimum())
    boxes.append([a.x(), a.y(), b.x(), b.y()])
R["render"] = {"png": str(png), "boxes": boxes, "image_valid": image.isValid()}

# -- tile, then train and evaluate on the tiles sorted into 0/ and 1/ ------------------------------
res = run("marsice:tile", {"INPUT": P["label"], "SIZE": 256, "OVERLAP": 0, "OUTPUT": str(out / "tiles")}, load=True)
index = QgsVectorLayer(f"{res['INDEX']}|layername=tiles", "tiles", "ogr")
R["tile"] = {**res, "valid": index.isValid() and index.crs().isValid(), "count": index.featureCount()}
data = out / "labelled"
for i, tif in enumerate(sorted(Path(res["TILES"]).glob("*.tif"))):
    (data / str(i % 2)).mkdir(parents=True, exist_ok=True)
    shutil.copy(tif, data / str(i % 2) / tif.name)
model = out / "model" / "tiny.keras"
model.parent.mkdir()
R["train"] = run(
    "marsice:train",
    {"DATA_FOLDER": str(data), "INPUT_SIZE": 64, "EPOCHS": 1, "BATCH_SIZE": 4, "OUTPUT": str(model)},
)
R["evaluate"] = run(
    "marsice:evaluate", {"MODEL": str(model), "DATA_FOLDER": str(data), "OUTPUT": str(out / "report.json")}
)

# -- catalogue, terrain and the workflow's dry run ------------------------------------------------
res = run(
    "marsice:search",
    {"LAT_MIN": -60, "LAT_MAX": -40, "LS_FROM": 140, "LS_TO": 200, "SOURCE": 2, "OUTPUT": str(out / "fp.gpkg")},
    load=True,
)
footprints = QgsVectorLayer(f"{res['OUTPUT']}|layername=footprints", "fp", "ogr")
R["search"] = {"valid": footprints.isValid() and footprints.crs().isValid(), "count": footprints.featureCount()}
res = run("marsice:download", {"INPUT": P["footprints"], "FOLDER": str(out / "downloads")})
R["download"] = {"FILES": res["FILES"], "files": sorted(p.name for p in (out / "downloads").iterdir())}
res = run(
    "marsice:terrain",
    {"DTM": P["dtm"], "INPUT": P["label"], "CANDIDATES": str(detect_gpkg), "OUTPUT": str(out / "terrain")},
)
scored = QgsVectorLayer(f"{detect_gpkg}|layername=ice_candidates", "scored", "ogr")
R["terrain"] = {
    "scored": res["CANDIDATES_SCORED"], "slope_valid": QgsRasterLayer(res["SLOPE"], "slope", "gdal").isValid(),
    "ranked": sum(1 for f in scored.getFeatures() if f["terrain_rank_value"] is not None),
}
scan_gpkg = out / "scan" / "scan.gpkg"
scan_gpkg.parent.mkdir()
res = run("marsice:scan", {"SOURCE": 2, "LIMIT": 2, "DRY_RUN": True, "OUTPUT": str(scan_gpkg)}, load=True)
R["scan"] = {**res, "written": sorted(p.name for p in scan_gpkg.parent.iterdir())}
R["groups"] = [
    [child.name(), [(node.name(), node.layer().renderer().type()) for node in child.children()]]
    for child in QgsProject.instance().layerTreeRoot().children()
]
capped = out / "capped" / "scan.gpkg"
capped.parent.mkdir()
R["scan_cap"] = {
    "message": failure("marsice:scan", {
        "SOURCE": 1, "ODE_URL": P["ode_url"], "MAX_GB": 0.0001, "TERRAIN": False, "CACHE": str(out / "cache"),
        "OUTPUT": str(capped),
    }),
    "written": sorted(p.name for p in capped.parent.iterdir()),
    "cached": sorted(p.name for p in (out / "cache").iterdir()) if (out / "cache").exists() else [],
}


# -- cancel on the first progress event -----------------------------------------------------------
class CancelOnFirstProgress(QgsProcessingFeedback):
    def __init__(self, marker):
        super().__init__()
        self.marker = marker
        self.children_running = None

    def setProgress(self, percent):
        super().setProgress(percent)
        if not self.isCanceled():
            self.children_running = children(self.marker)
            self.cancel()


cancel_dir = out / "cancel"
cancel_dir.mkdir()
feedback = CancelOnFirstProgress(str(cancel_dir))
try:
    run("marsice:detect", {"INPUT": P["label"], "OUTPUT": str(cancel_dir / "results.gpkg")}, feedback=feedback,
        key="cancel")
    message = None
except QgsProcessingException as exc:
    message = str(exc)
R["cancel"] = {
    "message": message, "children_running": feedback.children_running,
    "children_left": children(str(cancel_dir)), "files_left": sorted(p.name for p in cancel_dir.iterdir()),
}

# -- bad inputs, a missing environment, and the parameters of every option through a recording CLI ----
R["bad"] = {
    "missing_product": failure("marsice:detect", {"INPUT": P["missing"], "OUTPUT": P["bad_gpkg"]}),
    "not_gpkg": failure("marsice:detect", {"INPUT": P["label"], "OUTPUT": P["bad_shp"]}),
}
os.environ["MARSICE_PYTHON"] = "/nonexistent/venv"
R["bad"]["missing_venv"] = failure("marsice:detect", {"INPUT": P["label"], "OUTPUT": P["bad_gpkg"]})
os.environ["MARSICE_PYTHON"] = P["fake_python"]
os.environ["FAKE_MARSICE_RECORD"] = P["record"]


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps the command lines the algorithm logs before it runs them."""

    def __init__(self):
        super().__init__()
        self.commands = []

    def pushCommandInfo(self, info):
        self.commands.append(info)
        super().pushCommandInfo(info)


for alg_id, params in P["recorded"]:
    feedback = RecordingFeedback()
    preview = registry.createAlgorithmById(alg_id).console_command(params, QgsProcessingContext())
    R.setdefault("recorded_results", []).append(run(alg_id, params, feedback=feedback, key="recorded"))
    R.setdefault("recorded_commands", []).append({"preview": preview, "logged": feedback.commands})
R["both_data"] = failure(
    "marsice:train", {"DATA_FOLDER": str(data), "TILE_INDEX": str(index.source().split("|")[0]), "OUTPUT": "x.keras"}
)
del os.environ["MARSICE_PYTHON"]
print(json.dumps(R), flush=True)
# Layers and jobs made here belong to Python: free them while QGIS's providers are still loaded (freed after
# exitQgis, or in the interpreter's teardown, they segfault), then close QGIS.
del job, image, index, footprints, scored, candidates, chunks, loaded
QgsProject.instance().clear()
app.exitQgis()
'''


def _footprints_from_local_ode(server: LocalServer, out: Path) -> tuple[Path, str]:
    """A footprint layer of one product served by ``server`` (as a search of the ODE would write it)."""
    server.products = [southern_product(real_products()[1], 11319, -49.0, 298.95, 150.0, server.base)]
    pid = server.products[0]["pdsid"]
    server.files = {f"{pid}.JP2": file_bytes(f"{pid}.JP2"), f"{pid}.LBL": file_bytes(f"{pid}.LBL", 9_000)}
    gpkg = out / "local_footprints.gpkg"
    proc = subprocess.run(
        [sys.executable, "-m", "marsice_plugin", "search", "--lat", "-60", "-40", "--source", "ode",
         "--ode-url", f"{server.base}/many/live2/", "-o", str(gpkg)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return gpkg, pid


def _recorded_runs(tmp: Path) -> list:
    """Algorithms run against the recording CLI: every optional parameter set, to check the argv."""
    return [
        ("marsice:tile", {
            "INPUT": "/data/P.LBL", "SIZE": 512, "OVERLAP": 16, "SCALE": 0.5, "CHUNK_M": 200, "MODEL_SCALE": 0.3,
            "MAX_CENTER_NODATA": 0.05, "MAX_NODATA": 0.4, "NO_REPAIR": True, "INDEX_ONLY": True, "OVERWRITE": True,
            "OUTPUT": str(tmp / "tiles"),
        }),
        ("marsice:train", {
            "TILE_INDEX": "/data/P_tiles.gpkg", "LABEL_FIELD": "ice", "INPUT_SIZE": 128, "EPOCHS": 3,
            "BATCH_SIZE": 8, "VALIDATION_SPLIT": 0.25, "SEED": 4, "AUGMENT": 1, "READ_LEVEL": 2,
            "LEARNING_RATE": 0.0003, "KEEP_BEST": True, "OUTPUT": str(tmp / "m.keras"),
        }),
        ("marsice:train", {"SYNTHETIC": 40, "INIT": "/data/m.keras", "OUTPUT": str(tmp / "s.keras")}),
        ("marsice:evaluate", {
            "MODEL": "/data/m.keras", "TILE_INDEX": "/data/P_tiles.gpkg", "LABEL_FIELD": "ice", "LIMIT": 2,
            "THRESHOLD": 0.5, "CACHE": "/data/cache", "OUTPUT": str(tmp / "r.json"), "PR_CURVE": str(tmp / "pr.png"),
        }),
        ("marsice:scan", {
            "LAT_MIN": -55, "LAT_MAX": -45, "LS_FROM": 340, "LS_TO": 20, "SOURCE": 1, "DRY_RUN": False,
            "MAX_GB": 12.5, "LIMIT": 3, "MODEL": "/data/m.keras", "THRESHOLD": 0.7, "TERRAIN": False,
            "CACHE": "/data/cache", "CACHE_GB": 20, "WORKERS": 4, "ODE_URL": "http://127.0.0.1:9/ode",
            "KEEP_DOWNLOADS": True, "OUTPUT": str(tmp / "scan.gpkg"),
        }),
        ("marsice:detect", {
            "INPUT": "/data/P.LBL", "MODEL": "/data/m.keras", "THRESHOLD": 0.5, "OVERLAP": False, "PRECISION": 1,
            "READ_LEVEL": 3, "PROBABILITY": str(tmp / "p.tif"), "OUTPUT": str(tmp / "d.gpkg"),
        }),
        ("marsice:detect", {"INPUT": "/data/P.LBL", "FAST": True, "OUTPUT": str(tmp / "f.gpkg")}),
        ("marsice:scan", {
            "LAT_MIN": -55, "LAT_MAX": -45, "LS_FROM": 340, "LS_TO": 20, "MODEL": "/data/m.keras", "FAST": True,
            "OUTPUT": str(tmp / "scan2.gpkg"),
        }),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def toolbox(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("toolbox")
    # the committed 512 x 384 px product (one detect chunk, 2 x 2 tiles of 256 px) and its DTM, in a folder of its
    # own: QGIS may leave its .aux.xml beside what it opened
    product = tiny_product(tmp / "product")
    fake = tmp / "fake-venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(FAKE_CLI)
    fake.chmod(0o755)
    (tmp / "out").mkdir()
    params = {
        "repo": str(REPO), "out": str(tmp / "out"), "label": str(product.label_path), "dtm": str(product.dtm_path),
        "missing": str(tmp / "missing" / "ESP_000000_1300_RED.LBL"), "bad_gpkg": str(tmp / "bad" / "results.gpkg"),
        "bad_shp": str(tmp / "bad" / "results.shp"), "fake_python": str(fake), "record": str(tmp / "record.jsonl"),
        "recorded": _recorded_runs(tmp / "recorded"),
    }  # fmt: skip
    (tmp / "bad").mkdir()
    with LocalServer() as server:
        footprints, pid = _footprints_from_local_ode(server, tmp)
        params["footprints"] = str(footprints)
        params["ode_url"] = f"{server.base}/many/live2/"
        code = f"P = json.loads({json.dumps(json.dumps(params))})\n" + SCRIPT
        result = run_qgis_python(code, tmp / "home", timeout=600)
    result["pid"] = pid
    result["params"] = params
    result["recorded_argv"] = [json.loads(line) for line in Path(params["record"]).read_text().splitlines()]
    return result


def test_provider_registers_every_algorithm_with_help_group_and_icon(toolbox: dict) -> None:
    algorithms = toolbox["algorithms"]
    assert toolbox["provider"] == {"name": "MarsIce", "icon": True}
    assert set(algorithms) == set(EXPECTED)
    for alg_id, (name, group) in EXPECTED.items():
        info = algorithms[alg_id]
        assert info["name"] == name
        assert group is None or info["group"] == group
        assert info["icon"], alg_id
        if group is not None:  # ours: every parameter explained in a definition list
            assert info["help"].count("<dt>") >= 4, alg_id


def test_detect_results_load_styled_into_one_group_per_run(toolbox: dict) -> None:
    groups = [entry for entry in toolbox["tree"] if entry["group"]]
    assert len(groups) == 1 and len(toolbox["tree"]) == 1  # nothing loose at the root, the dry run added nothing
    assert groups[0]["name"].startswith("results (Detect ice patches, ")
    layers = {layer["name"]: layer for layer in groups[0]["layers"]}
    gpkg = toolbox["detect"]["OUTPUT"]
    # the probability raster, left empty, is written under its default name beside the GeoPackage and loaded below
    pid = Path(toolbox["params"]["label"]).stem
    raster_name = f"Ice probability (from the run's threshold): results_{pid}_probability"
    assert list(layers) == ["Ice candidates", "Chunk ice probability", "Product footprints", raster_name]
    raster = layers.pop(raster_name)
    assert (
        toolbox["detect"]["PROBABILITY"]
        == raster["source"]
        == str(Path(gpkg).parent / f"results_{pid}_probability.tif")
    )
    assert raster["valid"] and raster["crs_valid"] and raster["renderer"] == "singlebandpseudocolor"  # its .qml
    crs = pyproj.CRS.from_wkt(raster["crs_wkt"])
    assert crs.to_epsg() is None and 3.37e6 < crs.ellipsoid.semi_major_metre < 3.40e6  # the product's Mars CRS
    for layer in layers.values():
        assert layer["valid"] and layer["crs_valid"] and layer["source"].startswith(gpkg + "|layername=")
    # the styles stored in the GeoPackage, not Processing's plain default symbols
    assert layers["Chunk ice probability"]["renderer"] == "RuleRenderer"  # flagged by the run's own threshold
    assert layers["Ice candidates"]["renderer"] == "RuleRenderer"  # by the second stage's probability
    assert layers["Product footprints"]["colour"] == "#1e90ff"
    with sqlite3.connect(gpkg) as db:
        (n_candidates,) = db.execute("SELECT count(*) FROM ice_candidates").fetchone()
    assert layers["Ice candidates"]["count"] == n_candidates > 0
    assert layers["Chunk ice probability"]["count"] == 1 and layers["Product footprints"]["count"] == 1
    assert Path(toolbox["detect"]["QUICKLOOK"]).read_bytes()[:4] == b"\x89PNG"


def test_rendered_map_draws_the_candidates_in_their_style_where_they_are(toolbox: dict) -> None:
    render = toolbox["render"]
    assert render["image_valid"]
    rgb = np.asarray(Image.open(render["png"]).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    magenta = (r > 200) & (b > 200) & (g < 100)
    assert (rgb.std(axis=(0, 1)) > 5).all()  # the image itself was drawn, not only outlines on black
    near = np.zeros_like(magenta)
    hits = 0
    for x0, y0, x1, y1 in render["boxes"]:
        # outlines widen with the probability (up to 1.3 mm): a margin of 8 px holds the widest
        cols = slice(max(int(x0) - 8, 0), int(x1) + 9)
        rows = slice(max(int(y0) - 8, 0), int(y1) + 9)
        near[rows, cols] = True
        hits += bool(magenta[rows, cols].any())
    assert len(render["boxes"]) >= 2  # the candidates the second stage kept
    assert hits == len(render["boxes"])  # every candidate outline is drawn ...
    assert magenta.sum() > 10 * len(render["boxes"])
    assert not (magenta & ~near).any()  # ... and magenta appears nowhere else


def test_tile_train_and_evaluate_run_through_processing(toolbox: dict) -> None:
    tile = toolbox["tile"]
    assert tile["valid"] and tile["count"] == tile["CHUNKS"] == 4
    assert Path(tile["INDEX"]).name.endswith("_tiles.gpkg") and len(list(Path(tile["TILES"]).glob("*.tif"))) >= 3
    model = Path(toolbox["train"]["OUTPUT"])
    assert model.suffix == ".keras" and model.stat().st_size > 10_000
    assert Path(toolbox["train"]["CURVES"]).read_bytes()[:4] == b"\x89PNG"
    evaluation = toolbox["evaluate"]
    report = json.loads(Path(evaluation["OUTPUT"]).read_text())
    assert report["chunks"]["n"] == len(list(Path(tile["TILES"]).glob("*.tif")))
    assert evaluation["ACCURACY"] == pytest.approx(report["chunks"]["accuracy"])
    assert 0.0 <= evaluation["ROC_AUC"] <= 1.0 and 0.0 <= evaluation["BASELINE_ROC_AUC"] <= 1.0


def test_every_run_gets_its_own_group_and_a_dry_run_none(toolbox: dict) -> None:
    names = [name for name, _ in toolbox["groups"]]
    assert len(names) == 3  # detect, tile and search were loaded; the workflow's dry run added nothing
    pid = Path(toolbox["params"]["label"]).stem
    # the newest group on top
    assert names[0].startswith("fp (Search HiRISE products, ") and names[2].startswith("results (Detect ice patches, ")
    assert names[1].startswith(f"{pid}_tiles (Tile product, ")
    assert toolbox["groups"][0][1] == [["HiRISE footprints", "graduatedSymbol"]]  # by season (Ls)
    assert toolbox["groups"][1][1] == [["Tile index", "RuleRenderer"]]  # coloured by label (styles.py)


def test_catalogue_terrain_and_workflow_dry_run_through_processing(toolbox: dict) -> None:
    assert toolbox["search"] == {"valid": True, "count": 1409}
    pid = toolbox["pid"]
    assert toolbox["download"] == {"FILES": 2, "files": [".marsice", f"{pid}.JP2", f"{pid}.LBL"]}  # + records
    terrain = toolbox["terrain"]
    assert terrain["slope_valid"] and terrain["scored"] == terrain["ranked"] > 0
    scan = toolbox["scan"]
    assert scan["PRODUCTS"] == 2 and scan["DOWNLOAD_GB"] == 1.382  # the bundled catalogue's estimates
    assert scan["OUTPUT"] is None and scan["written"] == []  # a dry run writes nothing


def test_workflow_download_cap_refuses_before_pulling_anything(toolbox: dict) -> None:
    cap = toolbox["scan_cap"]
    assert cap["message"].startswith("DownloadError: this scan would pull 1 products, 2 files, ")
    assert "more than --max-gb 0.0001; narrow the search" in cap["message"]
    assert cap["written"] == [] and cap["cached"] == []


def test_cancel_kills_the_child_and_leaves_no_output(toolbox: dict) -> None:
    cancel = toolbox["cancel"]
    assert cancel["children_running"], "the child had started when the first progress event arrived"
    assert cancel["message"] == "CancelledError: Cancelled by the user; no output was written."
    assert cancel["children_left"] == []
    assert cancel["files_left"] == []
    for pid in cancel["children_running"]:
        assert not Path(f"/proc/{pid}").exists() or "marsice_plugin" not in Path(f"/proc/{pid}/cmdline").read_text()


def _cli_error(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "marsice_plugin", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marsice: error: ")
    return lines[0].removeprefix("marsice: error: ")


def test_bad_inputs_fail_with_the_cli_message(toolbox: dict) -> None:
    params, bad = toolbox["params"], toolbox["bad"]
    # the CLI's own message, under the error's class name (what to look up in docs/errors.md)
    assert bad["missing_product"] == "ProductError: " + _cli_error(
        "detect", params["missing"], "-o", params["bad_gpkg"]
    )
    assert "does not exist" in bad["missing_product"]
    assert bad["not_gpkg"] == "OutputError: " + _cli_error("detect", params["label"], "-o", params["bad_shp"])
    assert ".gpkg" in bad["not_gpkg"]
    assert os.listdir(Path(params["bad_gpkg"]).parent) == []


def test_missing_venv_gives_the_fix(toolbox: dict) -> None:
    message = toolbox["bad"]["missing_venv"]
    assert message.startswith("SetupError: ") and "/nonexistent/venv" in message and "make setup" in message
    assert "MarsIce ▸ Python environment" in message


def test_the_run_logs_and_runs_exactly_the_previewed_command(toolbox: dict) -> None:
    """processAlgorithm, written once in the base class, runs what cli_args builds (the argv of every option is
    checked without running anything in test_qgis_argv.py), and logs it first as a line a shell can run."""
    tmp = Path(toolbox["params"]["record"]).parent / "recorded"
    recorded, commands = toolbox["recorded_argv"], toolbox["recorded_commands"]
    assert len(recorded) == len(commands) == len(toolbox["params"]["recorded"])
    for argv, command in zip(recorded, commands, strict=True):
        assert command["logged"] == [command["preview"]]
        assert shlex.split(command["preview"]) == ["marsice", *argv]
    tile, train_index, train_synthetic, evaluate, scan, detect, fast, scan_model = recorded
    assert tile[:4] == ["tile", "/data/P.LBL", "-o", str(tmp / "tiles")] and "--overwrite" in tile
    assert fast == ["detect", "/data/P.LBL", "-o", str(tmp / "f.gpkg"), "--fast"]
    assert "--model" in scan_model and "--fast" not in scan_model  # a given model wins over the tick
    assert toolbox["recorded_results"][1]["OUTPUT"] == str(tmp / "m.keras")  # the MODEL the CLI reported
    assert "not both" in toolbox["both_data"]
