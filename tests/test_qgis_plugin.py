"""The QGIS Processing plugin, exercised through a real headless QGIS (``qgis_process.bin``).

QGIS always runs in a subprocess, never inside pytest: pytest runs in the venv with TensorFlow and
rasterio, whose GDAL/PROJ/numpy must never share a process with QGIS's own. Each QGIS run gets an
isolated profile (a temporary HOME) and finds the plugin through ``QGIS_PLUGINPATH`` = the repository
root: ``marsice_plugin/`` is itself a plugin folder (its metadata.txt is a link to the top-level one).

``qgis_process`` (the wrapper script) is broken on Debian 12, hence ``qgis_process.bin``. QGIS 3.22
takes parameters after ``--`` as ``NAME=VALUE`` (not ``--NAME=VALUE``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.qgis

REPO = Path(__file__).resolve().parents[1]
QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
#: Variables of pytest's venv process that would make QGIS's embedded Python or its GDAL/PROJ load
#: the venv's libraries instead of the system ones.
_VENV_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PROJ_LIB", "PROJ_DATA", "GDAL_DATA")

if not QGIS_PROCESS.exists():
    pytest.skip(f"{QGIS_PROCESS} is not installed", allow_module_level=True)


def _qgis_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for one headless QGIS with its own profile under ``home``."""
    env = {k: v for k, v in os.environ.items() if k not in _VENV_VARIABLES and not k.startswith("MARSICE_")}
    runtime = home / "xdg-runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        HOME=str(home),
        XDG_RUNTIME_DIR=str(runtime),
        QGIS_PLUGINPATH=str(REPO),
    )
    env.update(extra)
    return env


def _qgis_process(home: Path, *args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QGIS_PROCESS), *args],
        env=_qgis_env(home, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _profile_ini(home: Path) -> Path:
    return home / ".local/share/QGIS/QGIS3/profiles/default/QGIS/QGIS3.ini"


def _enabled_profile(home: Path) -> Path:
    """A fresh QGIS profile in ``home`` with the MarsIce plugin enabled; returns ``home``."""
    proc = _qgis_process(home, "plugins", "enable", "marsice_plugin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Enabled marsice_plugin (MarsIce)" in proc.stdout
    assert "marsice_plugin=true" in _profile_ini(home).read_text()
    return home


@pytest.fixture(scope="module")
def qgis_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One isolated QGIS profile shared by the tests of this module, with the plugin enabled."""
    return _enabled_profile(tmp_path_factory.mktemp("qgis-home"))


def test_plugin_is_listed_with_its_detect_algorithm(qgis_home: Path) -> None:
    proc = _qgis_process(qgis_home, "--json", "list")
    assert proc.returncode == 0, proc.stderr
    providers = json.loads(proc.stdout)["providers"]
    marsice = providers["marsice"]
    assert marsice["name"] == "MarsIce"
    detect = marsice["algorithms"]["marsice:detect"]
    assert detect["name"] == "Detect ice patches"
    assert detect["group"] == "Detection"

    plain = _qgis_process(qgis_home, "list")
    assert "marsice:detect\tDetect ice patches" in plain.stdout


def test_detect_parameters_match_the_cli_options(qgis_home: Path) -> None:
    proc = _qgis_process(qgis_home, "--json", "help", "marsice:detect")
    assert proc.returncode == 0, proc.stderr
    help_ = json.loads(proc.stdout)
    params = help_["parameters"]
    assert set(params) == {
        "INPUT", "INPUT_LAYER", "MODEL", "FAST", "THRESHOLD", "OVERLAP", "PRECISION", "READ_LEVEL", "OUTPUT",
        "PROBABILITY", "QUICKLOOK", "ALL_CANDIDATES", "SEARCH_ALL", "SEARCH_THRESHOLD", "SUN_AZIMUTH",
    }  # fmt: skip
    sun = params["SUN_AZIMUTH"]["raw_definition"]
    assert (sun["default"], sun["min"], sun["max"], params["SUN_AZIMUTH"]["optional"]) == (None, 0.0, 360.0, True)
    search = params["SEARCH_THRESHOLD"]["raw_definition"]
    assert (search["default"], search["min"], search["max"]) == (None, 0.0, 1.0)
    assert params["SEARCH_THRESHOLD"]["optional"] is True  # empty: the threshold, as the CLI
    assert params["INPUT"]["optional"] is True and params["INPUT_LAYER"]["optional"] is True  # a file or a layer
    assert params["MODEL"]["optional"] is True
    assert params["MODEL"]["raw_definition"]["extension"] == "keras"
    assert params["FAST"]["raw_definition"]["default"] is False  # the shipped ensemble unless asked
    threshold = params["THRESHOLD"]["raw_definition"]
    assert (threshold["default"], threshold["min"], threshold["max"]) == (None, 0.0, 1.0)
    assert params["THRESHOLD"]["optional"] is True  # empty: the model card's threshold, as the CLI
    assert params["OUTPUT"]["raw_definition"]["parameter_type"] == "vectorDestination"
    assert params["QUICKLOOK"]["optional"] is True and params["PROBABILITY"]["optional"] is True
    assert params["OVERLAP"]["raw_definition"]["default"] is True  # patches on chunk edges seen whole by default
    assert params["PRECISION"]["raw_definition"]["options"] == ["float32", "mixed_float16", "mixed_bfloat16"]
    assert params["READ_LEVEL"]["raw_definition"]["default"] == 0  # the model card decides unless asked
    assert len(params["READ_LEVEL"]["raw_definition"]["options"]) == 4
    assert set(help_["outputs"]) == {"OUTPUT", "QUICKLOOK", "PROBABILITY"}


def test_missing_venv_fails_with_the_setup_instructions(qgis_home: Path, tmp_path: Path) -> None:
    label = REPO / "tests" / "data" / "ESP_013951_1955_RED.LBL"
    out = tmp_path / "out.gpkg"
    proc = _qgis_process(
        qgis_home,
        "run",
        "marsice:detect",
        "--",
        f"INPUT={label}",
        f"OUTPUT={out}",
        MARSICE_PYTHON="/nonexistent/python",
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "make setup" in text
    assert "/nonexistent/python" in text
    assert not out.exists()


def test_provider_setting_wins_over_the_environment(tmp_path: Path) -> None:
    """The path set in Processing ▸ Options (stored in the profile) is the one used."""
    home = _enabled_profile(tmp_path / "home")
    with _profile_ini(home).open("a") as ini:
        ini.write("\n[Processing]\nConfiguration\\MARSICE_PYTHON=/nonexistent/setting-venv\n")
    proc = _qgis_process(
        home,
        "run",
        "marsice:detect",
        "--",
        f"INPUT={tmp_path / 'x.LBL'}",
        f"OUTPUT={tmp_path / 'out.gpkg'}",
        MARSICE_PYTHON=sys.executable,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "/nonexistent/setting-venv" in text
    assert "make setup" in text


FAKE_CLI = r"""#!/usr/bin/python3
import json, os, sys

def emit(**event):
    print(json.dumps(event), flush=True)

argv = sys.argv[1:]
with open(os.environ["FAKE_MARSICE_RECORD"], "w") as record:
    json.dump({"argv": argv, "PYTHONPATH": os.environ.get("PYTHONPATH")}, record)
if "FAIL" in os.environ.get("FAKE_MARSICE_MODE", ""):
    emit(type="error", error="LabelError", message="MAP_PROJECTION_TYPE is missing from the label", exit_code=2)
    sys.exit(2)
emit(type="progress", percent=40.0, message="chunk 2/5")
emit(type="log", level="info", message="fake product read")
emit(type="log", level="warning", message="chunk 3 is mostly no-data")
emit(type="result", outputs={"OUTPUT": argv[argv.index("-o") + 1]}, summary="5 chunks, 1 candidate")
"""


@pytest.fixture
def fake_cli(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in for the venv's python that records its argv and plays the JSON-line protocol."""
    python = tmp_path / "fake-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_CLI)
    python.chmod(0o755)
    return python, tmp_path / "record.json"


def test_parameters_become_the_cli_command_and_events_reach_the_log(
    qgis_home: Path, fake_cli: tuple[Path, Path], tmp_path: Path
) -> None:
    python, record = fake_cli
    model = tmp_path / "my model.keras"
    proc = _qgis_process(
        qgis_home,
        "run",
        "marsice:detect",
        "--",
        f"INPUT={tmp_path / 'P.LBL'}",
        f"MODEL={model}",
        "THRESHOLD=0.35",
        f"OUTPUT={tmp_path / 'out.gpkg'}",
        f"QUICKLOOK={tmp_path / 'ql.png'}",
        MARSICE_VENV=str(python.parent.parent),
        FAKE_MARSICE_RECORD=str(record),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = json.loads(record.read_text())
    assert ran["argv"] == [
        "-m", "marsice_plugin", "--progress", "json",
        "detect", str(tmp_path / "P.LBL"), "-o", str(tmp_path / "out.gpkg"), "--threshold", "0.35",
        "--model", str(model), "--quicklook", str(tmp_path / "ql.png"),
    ]  # fmt: skip
    assert ran["PYTHONPATH"] == str(REPO)  # QGIS's own PYTHONPATH is replaced by the plugin's folder
    assert "fake product read" in proc.stdout
    assert "WARNING:\tchunk 3 is mostly no-data" in proc.stdout  # a warning, not an "ERROR:" line
    assert "ERROR" not in proc.stdout + proc.stderr
    assert "5 chunks, 1 candidate" in proc.stdout
    assert f"OUTPUT:\t{tmp_path / 'out.gpkg'}" in proc.stdout


def test_optional_parameters_are_left_out_of_the_command(
    qgis_home: Path, fake_cli: tuple[Path, Path], tmp_path: Path
) -> None:
    python, record = fake_cli
    proc = _qgis_process(
        qgis_home,
        "run",
        "marsice:detect",
        "--",
        f"INPUT={tmp_path / 'P.LBL'}",
        f"OUTPUT={tmp_path / 'out.gpkg'}",
        MARSICE_PYTHON=str(python),
        FAKE_MARSICE_RECORD=str(record),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    argv = json.loads(record.read_text())["argv"]
    # no threshold given: none passed, so the CLI takes the model card's
    assert argv[4:] == ["detect", str(tmp_path / "P.LBL"), "-o", str(tmp_path / "out.gpkg")]


def test_cli_error_becomes_a_processing_error_with_its_message(
    qgis_home: Path, fake_cli: tuple[Path, Path], tmp_path: Path
) -> None:
    python, record = fake_cli
    proc = _qgis_process(
        qgis_home,
        "run",
        "marsice:detect",
        "--",
        f"INPUT={tmp_path / 'P.LBL'}",
        f"OUTPUT={tmp_path / 'out.gpkg'}",
        MARSICE_PYTHON=str(python),
        FAKE_MARSICE_RECORD=str(record),
        FAKE_MARSICE_MODE="FAIL",
    )
    assert proc.returncode != 0
    # the CLI's message under the error's own class name, as the child reported it
    assert "LabelError: MAP_PROJECTION_TYPE is missing from the label" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def sample_label(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic HiRISE product made by ``marsice sample`` (label + JP2): 512 x 384 px, one chunk."""
    if not (REPO / "marsice_plugin" / "__main__.py").exists():
        pytest.skip("the marsice CLI (marsice_plugin/__main__.py) is not written yet")
    out = tmp_path_factory.mktemp("sample")
    size = ["--width", "512", "--height", "384"]
    proc = subprocess.run(
        [str(VENV_PYTHON), "-m", "marsice_plugin", "sample", "-o", str(out), "--seed", "3", *size],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    labels = sorted(out.glob("*.LBL"))
    assert len(labels) == 1, list(out.iterdir())
    assert labels[0].with_suffix(".JP2").exists()
    return labels[0]


def test_detect_writes_chunk_polygons_with_probabilities(qgis_home: Path, sample_label: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.gpkg"
    quicklook = tmp_path / "quicklook.png"
    proc = _qgis_process(
        qgis_home,
        "--json",
        "run",
        "marsice:detect",
        "--",
        f"INPUT={sample_label}",
        f"OUTPUT={out}",
        f"MODEL={REPO / 'models' / 'demo_xception_256.keras'}",  # the small model: the toolbox test runs the default
        "THRESHOLD=0.6",
        f"QUICKLOOK={quicklook}",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(proc.stdout)["results"]
    assert Path(results["OUTPUT"].split("|")[0]) == out
    assert Path(results["QUICKLOOK"]) == quicklook

    with sqlite3.connect(out) as db:
        tables = {row[0] for row in db.execute("SELECT table_name FROM gpkg_contents")}
        assert "chunks" in tables
        probabilities = [row[0] for row in db.execute("SELECT probability FROM chunks")]
    assert len(probabilities) > 0
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert quicklook.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
