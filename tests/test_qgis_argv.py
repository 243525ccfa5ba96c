"""Every QGIS algorithm's parameters → ``marsice`` argv, its results hook and its help, with nothing run.

The algorithms follow QGIS's GDAL algorithms: ``cli_args`` maps parameters onto the command line and
``cli_results`` maps the CLI's reported outputs onto results, so both are checked here by calling them in
one headless QGIS (a subprocess: QGIS never shares pytest's process, which holds TensorFlow and rasterio's
own GDAL) without starting a single ``marsice`` child. The help files and their links are plain files,
checked in pytest's own process.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from marsice_plugin.qgisplugin.help import HELP_DIR, doc_url, help_html

from .conftest import REPO, run_qgis_python

ALGORITHMS = REPO / "marsice_plugin" / "qgisplugin" / "algorithms"

#: (algorithm id, parameters, the exact argv expected). Paths are never touched: nothing runs.
CASES = [
    ("marsice:detect", {"INPUT": "/data/P.LBL", "OUTPUT": "/out/d.gpkg"},
     ["detect", "/data/P.LBL", "-o", "/out/d.gpkg"]),
    ("marsice:detect", {
        "INPUT": "/data/P.LBL", "MODEL": "/data/my model.keras", "FAST": True, "THRESHOLD": 0.5, "OVERLAP": False,
        "PRECISION": 1, "READ_LEVEL": 3, "PROBABILITY": "/out/p.tif", "QUICKLOOK": "/out/ql.png",
        "OUTPUT": "/out/d.gpkg",
    }, [
        "detect", "/data/P.LBL", "-o", "/out/d.gpkg", "--threshold", "0.5", "--model", "/data/my model.keras",
        "--quicklook", "/out/ql.png", "--overlap", "0", "--probability-raster", "/out/p.tif",
        "--precision", "mixed_float16", "--read-level", "2",
    ]),
    # the second stage: keep every candidate, outline in every chunk
    ("marsice:detect", {"INPUT": "/data/P.LBL", "ALL_CANDIDATES": True, "SEARCH_ALL": True, "OUTPUT": "/out/a.gpkg"},
     ["detect", "/data/P.LBL", "-o", "/out/a.gpkg", "--all-candidates", "--search", "all"]),
    # flagged search from a lower CNN probability than the threshold
    ("marsice:detect", {"INPUT": "/data/P.LBL", "SEARCH_THRESHOLD": 0.4, "OUTPUT": "/out/s.gpkg"},
     ["detect", "/data/P.LBL", "-o", "/out/s.gpkg", "--search-threshold", "0.4"]),
    # the sun's azimuth for a raster that does not give it
    ("marsice:detect", {"INPUT": "/data/P.tif", "SUN_AZIMUTH": 297.5, "OUTPUT": "/out/u.gpkg"},
     ["detect", "/data/P.tif", "-o", "/out/u.gpkg", "--sun-azimuth", "297.5"]),
    # the shipped fast model when no model is given; the threshold left to the card
    ("marsice:detect", {"INPUT": "/data/P.LBL", "FAST": True, "READ_LEVEL": 1, "OUTPUT": "/out/f.gpkg"},
     ["detect", "/data/P.LBL", "-o", "/out/f.gpkg", "--fast", "--read-level", "0"]),
    # the probability raster left empty: no option, so the CLI writes it under its default name beside the GeoPackage
    ("marsice:detect", {"INPUT": "/data/P.LBL", "PROBABILITY": "", "OUTPUT": "/out/e.gpkg"},
     ["detect", "/data/P.LBL", "-o", "/out/e.gpkg"]),
    ("marsice:search", {"OUTPUT": "/out/fp.gpkg"}, [
        "search", "--lat", "-60.0", "-40.0", "--ls", "140.0", "200.0", "--lat-rule", "centre", "--product", "RED",
        "--source", "auto", "--table", "0", "-o", "/out/fp.gpkg",
    ]),
    ("marsice:search", {
        "LAT_MIN": 40, "LAT_MAX": 60, "LS_FROM": 340, "LS_TO": 20, "LAT_RULE": 1, "PRODUCT": 2, "SOURCE": 2,
        "MARS_YEARS": "29, 30", "DTM": True, "OUTPUT": "/out/fp.gpkg",
    }, [
        "search", "--lat", "40.0", "60.0", "--ls", "340.0", "20.0", "--lat-rule", "intersect", "--product", "DTM",
        "--source", "bundled", "--table", "0", "-o", "/out/fp.gpkg", "--mars-year", "29", "30", "--dtm",
    ]),
    ("marsice:download", {"INPUT": "/data/fp.gpkg", "FOLDER": "/out/dl"},
     ["download", "--to", "/out/dl", "--cache-gb", "50.0", "--from", "/data/fp.gpkg"]),
    ("marsice:download", {
        "PRODUCT_IDS": "ESP_011319_1305_RED, PSP_001234_1234_RED", "FOLDER": "/out/dl", "MAX_GB": 2.5, "CACHE_GB": 8,
        "DRY_RUN": True, "BROWSE": True,
    }, [
        "download", "ESP_011319_1305_RED", "PSP_001234_1234_RED", "--to", "/out/dl", "--cache-gb", "8.0",
        "--max-gb", "2.5", "--dry-run", "--browse",
    ]),
    ("marsice:terrain", {"DTM": "/data/DTEEC.IMG", "INPUT": "/data/P.LBL", "OUTPUT": "/out/terrain"},
     ["terrain", "--dtm", "/data/DTEEC.IMG", "--image", "/data/P.LBL", "-o", "/out/terrain", "--ring-m", "5.0"]),
    ("marsice:terrain", {
        "DTM": "/data/DTEEC.IMG", "INPUT": "/data/P.LBL", "CANDIDATES": "/out/d.gpkg", "RING_M": 7.5,
        "OUTPUT": "/out/terrain",
    }, [
        "terrain", "--dtm", "/data/DTEEC.IMG", "--image", "/data/P.LBL", "-o", "/out/terrain", "--ring-m", "7.5",
        "--candidates", "/out/d.gpkg",
    ]),
    # the sun given by hand, for a raster that carries none
    ("marsice:terrain", {
        "DTM": "/data/dem.tif", "INPUT": "/data/P.tif", "SUN_AZIMUTH": 297, "INCIDENCE": 68.5, "OUTPUT": "/out/terrain",
    }, [
        "terrain", "--dtm", "/data/dem.tif", "--image", "/data/P.tif", "-o", "/out/terrain", "--ring-m", "5.0",
        "--sun-azimuth", "297.0", "--incidence", "68.5",
    ]),
    ("marsice:tile", {"INPUT": "/data/P.LBL", "OUTPUT": "/out/tiles"}, [
        "tile", "/data/P.LBL", "-o", "/out/tiles", "--size", "1024", "--scale", "1.0", "--max-center-nodata", "0.01",
        "--max-nodata", "0.5",
    ]),
    ("marsice:tile", {
        "INPUT": "/data/P.LBL", "SIZE": 512, "OVERLAP": 16, "SCALE": 0.5, "CHUNK_M": 200, "MODEL_SCALE": 0.3,
        "MAX_CENTER_NODATA": 0.05, "MAX_NODATA": 0.4, "NO_REPAIR": True, "INDEX_ONLY": True, "OVERWRITE": True,
        "OUTPUT": "/out/tiles",
    }, [
        "tile", "/data/P.LBL", "-o", "/out/tiles", "--size", "512", "--overlap", "16", "--scale", "0.5",
        "--chunk-m", "200.0", "--model-scale", "0.3", "--max-center-nodata", "0.05", "--max-nodata", "0.4",
        "--no-repair", "--index-only", "--overwrite",
    ]),
    ("marsice:train", {
        "TILE_INDEX": "/data/P_tiles.gpkg", "LABEL_FIELD": "ice", "INPUT_SIZE": 128, "EPOCHS": 3, "BATCH_SIZE": 8,
        "VALIDATION_SPLIT": 0.25, "SEED": 4, "AUGMENT": 1, "READ_LEVEL": 2, "LEARNING_RATE": 0.0003, "KEEP_BEST": True,
        "OUTPUT": "/out/m.keras",
    }, [
        "train", "/data/P_tiles.gpkg", "-o", "/out/m.keras", "--label-field", "ice", "--input-size", "128",
        "--epochs", "3", "--batch-size", "8", "--validation-split", "0.25", "--seed", "4", "--augment", "none",
        "--learning-rate", "0.0003", "--read-level", "2", "--keep-best",
    ]),
    # a start model keeps its own input size: none passed
    ("marsice:train", {"SYNTHETIC": 40, "INIT": "/data/m.keras", "OUTPUT": "/out/s.keras"}, [
        "train", "-o", "/out/s.keras", "--synthetic", "40", "--init", "/data/m.keras", "--epochs", "25",
        "--batch-size", "25", "--validation-split", "0.2", "--seed", "0", "--augment", "sun",
        "--learning-rate", "0.001",
    ]),
    ("marsice:evaluate", {
        "MODEL": "/data/m.keras", "TILE_INDEX": "/data/P_tiles.gpkg", "LABEL_FIELD": "ice", "LIMIT": 2,
        "THRESHOLD": 0.5, "CACHE": "/data/cache", "OUTPUT": "/out/r.json", "PR_CURVE": "/out/pr.png",
    }, [
        "evaluate", "/data/m.keras", "/data/P_tiles.gpkg", "--label-field", "ice", "--set", "evaluation_set_v1",
        "--limit", "2", "--threshold", "0.5", "--cache", "/data/cache", "-o", "/out/r.json",
        "--pr-curve", "/out/pr.png",
    ]),
    # no cache folder given: one in the QGIS profile (the test fills in the profile's path)
    ("marsice:evaluate", {
        "MODEL": "/data/m.keras", "DATA_FOLDER": "/data/chunks", "SET": "evaluation_set_v3", "OUTPUT": "/out/r.json",
    }, [
        "evaluate", "/data/m.keras", "/data/chunks", "--set", "evaluation_set_v3",
        "--cache", "{profile}/marsice/evaluation", "-o", "/out/r.json",
    ]),
    # the defaults: a dry run under a 20 GB cap (raised on purpose)
    ("marsice:scan", {"OUTPUT": "/out/scan.gpkg"}, [
        "scan", "--lat", "-60.0", "-40.0", "--ls", "140.0", "200.0", "-o", "/out/scan.gpkg", "--source", "auto",
        "--cache-gb", "50.0", "--max-gb", "20.0", "--dry-run", "--workers", "2",
    ]),
    ("marsice:scan", {
        "LAT_MIN": -55, "LAT_MAX": -45, "LS_FROM": 340, "LS_TO": 20, "SOURCE": 1, "DRY_RUN": True, "MAX_GB": 12.5,
        "LIMIT": 3, "MODEL": "/data/m.keras", "FAST": True, "THRESHOLD": 0.7, "TERRAIN": False, "CACHE": "/data/cache",
        "CACHE_GB": 20, "WORKERS": 4, "ODE_URL": " http://127.0.0.1:9/ode ", "KEEP_DOWNLOADS": True,
        "OUTPUT": "/out/scan.gpkg",
    }, [
        "scan", "--lat", "-55.0", "-45.0", "--ls", "340.0", "20.0", "-o", "/out/scan.gpkg", "--source", "ode",
        "--ode-url", "http://127.0.0.1:9/ode", "--cache", "/data/cache", "--cache-gb", "20.0", "--max-gb", "12.5",
        "--dry-run", "--limit", "3", "--workers", "4", "--model", "/data/m.keras", "--threshold", "0.7", "--no-terrain",
        "--keep-downloads",
    ]),
    ("marsice:scan", {"DRY_RUN": False, "MAX_GB": 500, "ALLOW_UNKNOWN_SIZE": True, "OUTPUT": "/out/scan.gpkg"}, [
        "scan", "--lat", "-60.0", "-40.0", "--ls", "140.0", "200.0", "-o", "/out/scan.gpkg", "--source", "auto",
        "--cache-gb", "50.0", "--max-gb", "500.0", "--allow-unknown-size", "--workers", "2",
    ]),
    ("marsice:export_sites", {"INPUT": "/data/sites.gpkg"}, ["export", "/data/sites.gpkg", "--format", "csv"]),
    ("marsice:export_sites", {"INPUT": "/data/sites.gpkg", "FORMAT": 2, "OUTPUT": "/out/s.geojson"},
     ["export", "/data/sites.gpkg", "--format", "geojson", "-o", "/out/s.geojson"]),
    ("marsice:export_sites", {"INPUT": "/data/sites.gpkg", "OBSERVATIONS": True, "OUTPUT": "/out/obs.csv"},
     ["export", "/data/sites.gpkg", "--format", "csv", "-o", "/out/obs.csv", "--observations"]),
    ("marsice:site_history", {
        "INPUT": ["/data/a.gpkg", "/data/b.gpkg|layername=chunks"], "OUTPUT": "/out/sites.gpkg",
    }, [
        "sites", "/data/a.gpkg", "/data/b.gpkg", "-o", "/out/sites.gpkg", "--tolerance-m", "20.0",
        "--catalogue", "auto", "--plots", "/out/sites_plots",
    ]),
    ("marsice:site_history", {
        "INPUT": ["/data/a.gpkg"], "TOLERANCE_M": 35, "CATALOGUE": 3, "FOOTPRINTS": "/data/fp.gpkg",
        "PLOTS": "/out/png", "PULL_MISSING": "/out/queue.txt", "OUTPUT": "/out/sites.gpkg",
    }, [
        "sites", "/data/a.gpkg", "-o", "/out/sites.gpkg", "--tolerance-m", "35.0", "--catalogue", "none",
        "--plots", "/out/png", "--footprints", "/data/fp.gpkg", "--pull-missing", "/out/queue.txt",
    ]),
]  # fmt: skip

#: The first argv word of every algorithm: its ``marsice`` sub-command.
COMMANDS = {
    "marsice:detect": "detect", "marsice:search": "search", "marsice:download": "download",
    "marsice:terrain": "terrain", "marsice:tile": "tile", "marsice:train": "train", "marsice:evaluate": "evaluate",
    "marsice:scan": "scan", "marsice:site_history": "sites", "marsice:export_sites": "export",
}  # fmt: skip

SCRIPT = r"""
import math
import os
from pathlib import Path

sys.path.insert(0, P["repo"])
import marsice_plugin
from qgis.core import (
    QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback, QgsProcessingOutputLayerDefinition, QgsProject,
)

plugin = marsice_plugin.classFactory(None)
plugin.initProcessing()
registry = QgsApplication.processingRegistry()
provider = registry.providerById("marsice")
R = {"profile": QgsApplication.qgisSettingsDirPath().rstrip("/")}


def alg(alg_id):
    return registry.createAlgorithmById(alg_id)


def attempt(call):
    try:
        return call()
    except QgsProcessingException as exc:
        return {"error": str(exc)}


R["argv"] = [attempt(lambda: alg(a).cli_args(params, QgsProcessingContext())) for a, params, _ in P["cases"]]
R["console"] = [alg(a).console_command(params, QgsProcessingContext()) for a, params, _ in P["cases"]]
R["about"] = {
    a.id(): {
        "command": a.commandName(), "help": a.shortHelpString(), "url": a.helpUrl(), "tags": a.tags(),
        "own_process": "processAlgorithm" not in type(a).__dict__, "name": a.NAME,
    }
    for a in provider.algorithms()
}

# both kinds of labelled data at once: refused before anything runs
R["both"] = {
    a: attempt(lambda: alg(a).cli_args({"MODEL": "/m.keras", "DATA_FOLDER": "/d", "TILE_INDEX": "/t.gpkg",
                                        "OUTPUT": "/o"}, QgsProcessingContext()))
    for a in ("marsice:train", "marsice:evaluate")
}

# an output left "temporary": a new path on every parameterAs... call, one path once resolved
detect = alg("marsice:detect")
context = QgsProcessingContext()
raw = {"INPUT": "/data/P.LBL", "OUTPUT": "TEMPORARY_OUTPUT", "QUICKLOOK": "TEMPORARY_OUTPUT"}
resolved = detect.resolved(raw, context)
R["temporary"] = {
    "raw_twice": [detect.cli_args(raw, context)[3], detect.cli_args(raw, context)[3]],
    "resolved": [resolved["OUTPUT"], resolved["QUICKLOOK"]],
    "argv_twice": [detect.cli_args(resolved, context), detect.cli_args(resolved, context)],
    "results": detect.cli_results(resolved, context, {}),
}

# the probability raster left empty: the result and the layer loaded are the raster the CLI reports it wrote
raster_project = QgsProject()  # kept referenced: the context does not own it
context = QgsProcessingContext()
context.setProject(raster_project)
R["default_raster"] = {
    "results": detect.cli_results(
        {"INPUT": "/data/P.LBL", "OUTPUT": P["detect_out"], "PROBABILITY": None}, context, {"PROBABILITY": P["raster"]}
    ),
    "queued": list(context.layersToLoadOnCompletion()),
}

# an output the dialog would open: queued once when resolved; a dry run (nothing written) un-queues it
project = QgsProject()
scan = alg("marsice:scan")
context = QgsProcessingContext()
context.setProject(project)
queued = scan.resolved({"OUTPUT": QgsProcessingOutputLayerDefinition(P["scan_out"], project)}, context)
R["scan_queue"] = {"queued": list(context.layersToLoadOnCompletion()), "resolved": queued["OUTPUT"]}
R["scan_results"] = scan.cli_results(queued, context, {"products": 2, "download_gb": 0.0, "failed": 0})
R["scan_queue"]["after"] = list(context.layersToLoadOnCompletion())

# the other results hooks, from the outputs the CLI reports
context = QgsProcessingContext()
report = {"chunks": {"accuracy": 0.75, "precision": 0.5, "recall": 1.0, "npv": math.nan, "roc_auc": 0.8},
          "baseline_roc_auc": 0.6, "images": {"precision": 1.0}}
R["results"] = {
    "download": alg("marsice:download").cli_results({"FOLDER": "/out/dl"}, context, {"files": 3}),
    "evaluate": alg("marsice:evaluate").cli_results(
        {"OUTPUT": "/out/r.json", "PR_CURVE": None}, context, {"OUTPUT": "/out/r.json", "report": report}),
    "train": alg("marsice:train").cli_results({"OUTPUT": "/out/m.keras"}, context, {"MODEL": P["model"]}),
    "terrain": alg("marsice:terrain").cli_results(
        {"OUTPUT": "/out/t"}, context, {"SLOPE": "/out/t/P_slope.tif", "peak_ratio": 4.5, "candidates": 7}),
    "tile": alg("marsice:tile").cli_results(
        {"OUTPUT": "/out/tiles"}, context, {"TILES": "/out/tiles/P", "chunks": 16, "skipped": 2}),
}

# a MarsIce error reaches QGIS under its own class name (here: the environment is missing, nothing starts)
os.environ["MARSICE_PYTHON"] = "/nonexistent/venv"
R["setup_error"] = attempt(lambda: detect.run_cli(["detect", "/data/P.LBL"], QgsProcessingFeedback()))
print(json.dumps(R), flush=True)
app.exitQgis()
"""


@pytest.fixture(scope="module")
def qgis(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("argv")
    model = tmp / "m.keras"
    model.write_bytes(b"")
    model.with_suffix(".curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    raster = tmp / "d_P_probability.tif"  # where the CLI reports it wrote the default raster (only its path is read)
    raster.write_bytes(b"")
    params = {
        "repo": str(REPO), "cases": CASES, "scan_out": str(tmp / "scan.gpkg"), "model": str(model),
        "detect_out": str(tmp / "d.gpkg"), "raster": str(raster),
    }  # fmt: skip
    code = f"P = json.loads({json.dumps(json.dumps(params))})\n" + SCRIPT
    result = run_qgis_python(code, tmp / "home", timeout=300)
    result["tmp"] = tmp
    return result


@pytest.mark.qgis
def test_parameters_map_onto_the_exact_cli_argv(qgis: dict) -> None:
    for (alg_id, params, expected), argv in zip(CASES, qgis["argv"], strict=True):
        expected = [word.replace("{profile}", qgis["profile"]) for word in expected]
        assert argv == expected, (alg_id, params)
        assert argv[0] == COMMANDS[alg_id]


@pytest.mark.qgis
def test_the_preview_is_the_argv_as_a_shell_line(qgis: dict) -> None:
    for argv, line in zip(qgis["argv"], qgis["console"], strict=True):
        assert shlex.split(line) == ["marsice", *argv]
    assert "--model '/data/my model.keras'" in qgis["console"][1]  # pasted into a shell, it runs as is


@pytest.mark.qgis
def test_every_algorithm_leaves_running_to_the_base_class(qgis: dict) -> None:
    about = qgis["about"]
    assert set(about) == set(COMMANDS)
    for alg_id, info in about.items():
        assert info["own_process"], f"{alg_id} overrides processAlgorithm"
        assert info["command"] == f"marsice {COMMANDS[alg_id]}"
        assert {"marsice", "mars", "hirise"} <= set(info["tags"]) and len(info["tags"]) > 3


@pytest.mark.qgis
def test_help_comes_from_the_file_beside_the_algorithms_with_live_links(qgis: dict) -> None:
    for alg_id, info in qgis["about"].items():
        assert info["help"] == help_html(info["name"]), alg_id
        assert info["help"].count("<dt>") >= 4, alg_id
        links = re.findall(r'href="([^"]+)"', info["help"])
        assert links and all(link.startswith("file:///") for link in links), alg_id
        url, _, fragment = info["url"].partition("#")
        assert url.startswith("file:///") and Path(url.removeprefix("file://")).is_file(), alg_id


@pytest.mark.qgis
def test_data_given_twice_is_refused_before_anything_runs(qgis: dict) -> None:
    assert "not both" in qgis["both"]["marsice:train"]["error"]
    assert "not both" in qgis["both"]["marsice:evaluate"]["error"]


@pytest.mark.qgis
def test_a_temporary_output_is_one_path_for_the_argv_and_the_results(qgis: dict) -> None:
    temporary = qgis["temporary"]
    first, second = temporary["raw_twice"]
    assert first != second  # what resolving once prevents: the CLI would write one file, results name another
    output, quicklook = temporary["resolved"]
    assert output.endswith(".gpkg") and quicklook.endswith(".png") and "TEMPORARY_OUTPUT" not in output + quicklook
    argv, again = temporary["argv_twice"]
    assert argv == again == ["detect", "/data/P.LBL", "-o", output, "--quicklook", quicklook]
    assert temporary["results"] == {"OUTPUT": output, "QUICKLOOK": quicklook, "PROBABILITY": None}


@pytest.mark.qgis
def test_an_empty_probability_raster_is_returned_and_loaded_from_where_the_cli_wrote_it(qgis: dict) -> None:
    raster = str(qgis["tmp"] / "d_P_probability.tif")
    assert qgis["default_raster"]["results"] == {"OUTPUT": str(qgis["tmp"] / "d.gpkg"), "QUICKLOOK": None,
                                                 "PROBABILITY": raster}  # fmt: skip
    assert qgis["default_raster"]["queued"] == [raster]


@pytest.mark.qgis
def test_a_dry_run_leaves_no_layer_to_load(qgis: dict) -> None:
    queue = qgis["scan_queue"]
    out = str(qgis["tmp"] / "scan.gpkg")
    assert queue["resolved"] == out and queue["queued"] == [out] and queue["after"] == []
    assert qgis["scan_results"] == {
        "OUTPUT": None, "PRODUCTS": 2, "COMMITTED": None, "FAILED": 0, "CANDIDATES": None, "DOWNLOAD_GB": 0.0,
        "MANIFEST": None,
    }  # fmt: skip


@pytest.mark.qgis
def test_results_hooks_turn_the_cli_outputs_into_results(qgis: dict) -> None:
    results = qgis["results"]
    assert results["download"] == {"FOLDER": "/out/dl", "FILES": 3}
    # NaN, an undefined figure (no chunk left unflagged), becomes None: JSON outputs cannot hold NaN
    assert results["evaluate"] == {
        "OUTPUT": "/out/r.json", "PR_CURVE": None, "ACCURACY": 0.75, "PRECISION": 0.5, "RECALL": 1.0,
        "NPV": None, "ROC_AUC": 0.8, "BASELINE_ROC_AUC": 0.6, "IMAGE_PRECISION": 1.0, "IMAGE_NPV": None,
    }  # fmt: skip
    model = qgis["tmp"] / "m.keras"
    assert results["train"] == {"OUTPUT": str(model), "CURVES": str(model.with_suffix(".curves.png"))}
    assert results["terrain"]["SLOPE"] == "/out/t/P_slope.tif" and results["terrain"]["PEAK_RATIO"] == 4.5
    assert results["terrain"]["CANDIDATES_SCORED"] == 7 and results["terrain"]["OUTPUT"] == "/out/t"
    assert results["tile"] == {"OUTPUT": "/out/tiles", "INDEX": None, "TILES": "/out/tiles/P", "CHUNKS": 16,
                               "SKIPPED": 2}  # fmt: skip


@pytest.mark.qgis
def test_a_marsice_error_reaches_qgis_under_its_own_name(qgis: dict) -> None:
    message = qgis["setup_error"]["error"]
    assert message.startswith("SetupError: MarsIce's Python environment was not found at /nonexistent/venv")
    assert "make setup" in message


# -- the help files, without QGIS --------------------------------------------------------------------------


def _algorithm_names() -> list[str]:
    """``NAME = "..."`` of every algorithm module (read as text: importing them needs QGIS)."""
    names = []
    for path in sorted(ALGORITHMS.glob("*.py")):
        found = re.search(r'^    NAME = "(\w+)"$', path.read_text(), re.MULTILINE)
        if found:
            names.append(found.group(1))
    return names


def _slug(heading: str) -> str:
    """A Markdown heading's anchor as GitHub makes it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_algorithm_has_a_help_file_and_no_other_file_is_there() -> None:
    names = _algorithm_names()
    assert len(names) == len(COMMANDS)
    assert sorted(path.stem for path in HELP_DIR.glob("*.html")) == sorted(names)


def test_help_links_point_at_documents_and_sections_that_exist() -> None:
    for path in sorted(HELP_DIR.glob("*.html")):
        links = re.findall(r'<a href="([^"]+)">', path.read_text())
        assert links, path.name
        for link in links:
            document, _, anchor = link.partition("#")
            target = REPO / document
            assert target.is_file(), f"{path.name}: {link}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", target.read_text(), re.MULTILINE)
                assert anchor in {_slug(h) for h in headings}, f"{path.name}: {link}"


def test_help_links_to_the_model_cards_instead_of_copying_their_figures() -> None:
    thresholds = set()
    for card in (REPO / "models").glob("*.card.json"):
        threshold = json.loads(card.read_text()).get("threshold")
        if threshold is not None:
            thresholds.add(str(threshold))
    assert thresholds  # the shipped models' cards name their thresholds
    for path in sorted(HELP_DIR.glob("*.html")):
        text = path.read_text()
        assert not re.search(r"\b\d+ of \d+\b", text), path.name  # "found 28 of 30 ice images"
        assert not {t for t in thresholds if re.search(rf"(?<![\d.]){re.escape(t)}(?![\d])", text)}, path.name


def test_help_links_become_file_urls_or_plain_text_when_the_docs_are_not_installed(tmp_path: Path) -> None:
    text = help_html("scan")
    assert f'<a href="{(REPO / "docs" / "scan.md").as_uri()}">docs/scan.md</a>' in text
    assert doc_url("README.md#terrain") == (REPO / "README.md").as_uri() + "#terrain"
    # a plugin installed from the zip has no docs beside it: the path stays as text, no dead link
    bare = help_html("scan", root=tmp_path)
    assert "<a " not in bare and "docs/scan.md" in bare
    assert doc_url("README.md#terrain", root=tmp_path) == ""


def test_the_help_files_are_package_data() -> None:
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = REPO / "marsice_plugin"
    for path in HELP_DIR.glob("*.html"):
        relative = str(path.relative_to(package))
        assert any(fnmatch(relative, pattern) for pattern in patterns["marsice_plugin"]), relative
