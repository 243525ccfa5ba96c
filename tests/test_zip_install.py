"""The plugin as a geologist gets it: its ZIP unpacked into a clean QGIS profile, then one click.

No checkout is visible to QGIS here: the ZIP (built by ``make zip``'s own recipe, into a folder of this test) is
unpacked into a fresh profile's plugins folder, and QGIS runs without the checkout's venv, ``MARSICE_*`` or a
``PYTHONPATH``. The first ``marsice:detect`` finds no environment, so the plugin makes one for real
(``/usr/bin/python3 -m venv``, pip from the package index, the package from the plugin folder, the self-check),
then detects on the committed tiny product. Measured on 2 busy cores: about 2 minutes, most of it pip.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pytest

from marsice_plugin import __version__, child_process, environment
from marsice_plugin.errors import CancelledError, SetupError
from marsice_plugin.model_registry import DEFAULT_MODEL_NAME

from .conftest import REPO, tiny_product

pytestmark = pytest.mark.qgis

QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")
if not QGIS_PROCESS.exists():
    pytest.skip(f"{QGIS_PROCESS} is not installed", allow_module_level=True)


def clean_env(config: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's QGIS: no checkout venv, no MarsIce variables, no Python or GDAL paths."""
    dropped = ("PYTHON", "VIRTUAL_ENV", "PROJ_", "GDAL_", "MARSICE_", "QGIS_PLUGINPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO)))
    runtime = config / "xdg-runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(config),  # qgis_process 3.22 has no --profile: profiles/default under here
        XDG_RUNTIME_DIR=str(runtime),
        XDG_DATA_HOME=str(config / "xdg-data"),
    )
    env.update(extra)
    return env


def build_zip(folder: Path) -> Path:
    """``make zip`` into ``folder`` (its own build and dist folders, so a parallel ``make zip`` is not disturbed)."""
    args = ["make", "-s", "zip", f"ZIP_BUILD={folder / 'build'}", f"ZIP_DIST={folder / 'dist'}"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder / "dist" / "marsice_plugin.zip"


#: Runs in Debian's Python with QGIS (offscreen), the plugin imported from ``sys.argv[1]``; prints one JSON line.
#: ``state`` is what the desktop start-up asks (is the environment still to be made?); with ``sys.argv[2]`` = "task",
#: the set-up also runs as the desktop's QgsTask, through QGIS's task manager, and its outcome is reported.
QGIS_SIDE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from qgis.core import QgsApplication
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
from marsice_plugin.qgisplugin.plugin import EnvironmentTask
from marsice_plugin.qgisplugin.settings import environment_dir, environment_needed
answer = {"needed": environment_needed(), "venv": str(environment_dir())}
if sys.argv[2] == "task":
    done, progress = [], []
    task = EnvironmentTask(environment_dir(), lambda ok, message: done.append((ok, message)))
    task.progressChanged.connect(progress.append)
    QgsApplication.taskManager().addTask(task)
    started = time.monotonic()
    while not done and time.monotonic() - started < 600:
        app.processEvents()
        time.sleep(0.05)
    answer.update(ok=done[0][0], message=done[0][1], progress=max(progress, default=0.0))
print(json.dumps(answer))
"""


def qgis_side(plugins: Path, config: Path, what: str, **extra: str) -> dict:
    """Run :data:`QGIS_SIDE` for the plugin in ``plugins`` and the QGIS profile under ``config``."""
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", QGIS_SIDE, str(plugins), what],
        env=clean_env(config, **extra),
        cwd=config,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A clean profile with the plugin unpacked from its ZIP and enabled, as the plugin manager leaves it."""
    root = tmp_path_factory.mktemp("zip-install")
    archive = build_zip(root / "zip")
    config = root / "qgis-config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(plugins)
    proc = subprocess.run(
        [str(QGIS_PROCESS), "plugins", "enable", "marsice_plugin"],
        env=clean_env(config),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"root": root, "config": config, "plugin": plugins / "marsice_plugin", "archive": archive}


def test_the_zip_carries_the_pins_and_the_default_model(installed: dict) -> None:
    plugin = installed["plugin"]
    # one source of pins: the checkout's pyproject.toml, byte for byte, read by the set-up
    assert (plugin / "pyproject.toml").read_bytes() == (REPO / "pyproject.toml").read_bytes()
    pins = environment.pinned_requirements(("cpu",), plugin / "pyproject.toml")
    assert "tensorflow-cpu==2.19.1" in pins and "numpy==1.26.4" in pins
    assert all("==" in pin.split(";")[0] for pin in pins)  # exact pins only
    assert (plugin / "models" / DEFAULT_MODEL_NAME).stat().st_size == (
        REPO / "models" / DEFAULT_MODEL_NAME
    ).stat().st_size
    assert not (plugin.parent / ".venv").exists()


def test_first_detect_sets_up_the_environment_then_detects(installed: dict) -> None:
    """One click in a clean profile: the environment is made, self-checked and stamped, then detect writes a
    GeoPackage in a Mars CRS."""
    root, config, plugin = installed["root"], installed["config"], installed["plugin"]
    venv = config / "profiles" / "default" / "marsice" / "venv"  # the profile's folder, outside the plugin's
    assert qgis_side(plugin.parent, config, "state") == {"needed": True, "venv": str(venv)}
    product = tiny_product(root / "product")
    out = root / "result" / "tiny.gpkg"
    proc = subprocess.run(
        [str(QGIS_PROCESS), "--json", "run", "marsice:detect", "--", f"INPUT={product.label_path}", f"OUTPUT={out}"],
        env=clean_env(config),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    answer = json.loads(proc.stdout)
    assert answer["results"]["OUTPUT"] == str(out)
    info = "\n".join(answer["log"]["info"])
    assert f"First use: MarsIce makes its Python environment in {venv}" in info
    assert "MarsIce's environment is ready" in info

    # the environment: the system Python's venv, the plugin's version, its pins, a passed self-check
    stamp = json.loads((venv / environment.STAMP_NAME).read_text())
    assert stamp["version"] == __version__ and stamp["base_python"] == "/usr/bin/python3"
    assert stamp["pins"] == environment.pins_hash(environment.pinned_requirements(("cpu",), plugin / "pyproject.toml"))
    check = stamp["self_check"]
    assert check["model"] == str(plugin / "models" / DEFAULT_MODEL_NAME)  # the model came with the plugin
    assert 0.0 <= check["probability"] <= 1.0 and check["ice_pixels"] > 0 and check["installed_version"] == __version__
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    installed_package = next((venv / "lib").glob("python3.*/site-packages/marsice_plugin"))
    assert (installed_package / "models" / DEFAULT_MODEL_NAME).is_file()  # the package, models included

    # what detect wrote: the three layers, one product row, the chunk scored, a Mars CRS
    with sqlite3.connect(out) as db:
        layers = {name for (name,) in db.execute("SELECT table_name FROM gpkg_contents")}
        assert {"products", "chunks", "ice_candidates"} <= layers
        assert db.execute("SELECT product_id FROM products").fetchall() == [(product.product_id,)]
        n_chunks, scored = db.execute("SELECT count(*), count(probability) FROM chunks").fetchone()
        assert n_chunks == scored == 1
        srs = db.execute(
            "SELECT s.organization, s.definition FROM gpkg_geometry_columns g "
            "JOIN gpkg_spatial_ref_sys s ON s.srs_id = g.srs_id WHERE g.table_name = 'chunks'"
        ).fetchone()
    assert srs[0].upper() != "EPSG" and "Mars" in srs[1] and "3396190" in srs[1] and "EPSG" not in srs[1]

    # the next run: ready, nothing reinstalled; a plugin update with the same pins reinstalls only the package
    env = clean_env(config, PYTHONPATH=str(plugin.parent))
    command = ["/usr/bin/python3", "-m", "marsice_plugin.environment", "--json-progress", "--venv", str(venv)]
    stamp_path = venv / environment.STAMP_NAME
    before = stamp_path.read_text()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["type"] for line in proc.stdout.splitlines()] == ["progress", "result"]
    assert stamp_path.read_text() == before

    stamp = json.loads(before)
    stamp["version"] = "0.0.1"  # as an older plugin left it
    stamp_path.write_text(json.dumps(stamp))
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = {json.loads(line).get("message", "").split(" (")[0] for line in proc.stdout.splitlines()}
    assert "installing marsice from the plugin folder" in steps
    assert not any(step.startswith(("downloading", "updating pip", "making a venv")) for step in steps)
    updated = json.loads(stamp_path.read_text())
    assert updated["version"] == __version__ and updated["pins"] == stamp["pins"]

    # the desktop: nothing left to offer; its background task finds the environment ready at once
    desktop = qgis_side(plugin.parent, config, "task")
    assert desktop["needed"] is False and desktop["ok"] is True and desktop["progress"] == 100.0
    scored = updated["self_check"]["probability"]
    python = venv / "bin" / "python"
    assert (
        desktop["message"]
        == f"MarsIce's environment is ready: {python} (self-check: one generated chunk scored {scored:.3f})"
    )


def test_the_desktop_task_reports_a_failed_setup(tmp_path: Path) -> None:
    """The QgsTask through QGIS's task manager, with pip pointed at a closed port: it ends with the SetupError."""
    plugins = tmp_path / "plugins"  # the package with the pins, as the ZIP has it, and no .venv beside it
    shutil.copytree(REPO / "marsice_plugin", plugins / "marsice_plugin", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", plugins / "marsice_plugin")
    desktop = qgis_side(plugins, tmp_path, "task", **NO_INDEX)
    venv = tmp_path / "profiles" / "default" / "marsice" / "venv"
    assert desktop["needed"] is True and desktop["venv"] == str(venv)
    assert desktop["ok"] is False and desktop["progress"] >= 5.0  # it got as far as pip
    assert desktop["message"].startswith("SetupError: pip failed: pip could not reach the package index")
    assert not (venv / environment.STAMP_NAME).exists()


#: pip pointed at a closed port on 127.0.0.1, with the machine's pip configuration switched off: no network.
NO_INDEX = {
    "PIP_CONFIG_FILE": os.devnull,
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "PIP_FIND_LINKS": "",
    "PIP_RETRIES": "0",
    "PIP_DEFAULT_TIMEOUT": "5",
}


def test_no_network_is_a_setup_error_that_says_so(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "config", PYTHONPATH=str(REPO), **NO_INDEX)
    venv = tmp_path / "venv"
    command = ["/usr/bin/python3", "-m", "marsice_plugin.environment", "--json-progress", "--venv", str(venv)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == SetupError.exit_code
    error = json.loads(proc.stdout.splitlines()[-1])
    assert error["type"] == "error" and error["error"] == "SetupError"
    assert "could not reach the package index" in error["message"] and "PIP_INDEX_URL" in error["message"]
    assert not (venv / environment.STAMP_NAME).exists()  # not stamped: the next run tries again


def test_cancel_kills_the_setup_and_leaves_no_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the tools' Cancel does: the child (and what it started) is killed at its first progress report."""
    for key, value in NO_INDEX.items():
        monkeypatch.setenv(key, value)
    venv = tmp_path / "venv"
    command = ["/usr/bin/python3", "-m", "marsice_plugin.environment", "--json-progress", "--venv", str(venv)]
    events: list[dict] = []
    with pytest.raises(CancelledError):
        child_process.run_json_child(command, events.append, lambda: bool(events))
    assert events[0]["type"] == "progress" and events[0]["message"].startswith("making a venv")
    assert not (venv / environment.STAMP_NAME).exists()
    with (tmp_path / "venv.lock").open("a") as lock:  # the set-up held it: free now, so the child is gone
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_setup_errors_name_the_cause_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match=r"not enough free disk space .* GB free, about .* GB needed"):
        environment.check_free_space(tmp_path / "not" / "made" / "yet", need=10**18)
    full = environment.failure(["ERROR: Could not install packages due to an OSError: [Errno 28] No space left on "
                                "device"], "installing the pinned packages", tmp_path)  # fmt: skip
    assert "the disk holding" in str(full) and "free some space" in str(full)
    no_pip = environment.failure(
        ["The virtual environment was not created successfully because ensurepip is not", "available."], "x", tmp_path
    )
    assert "sudo apt install python3-venv" in str(no_pip)
    missing = [
        "ERROR: Could not find a version that satisfies the requirement tensorflow-cpu==9.9 (from versions: 2.19.1)",
        "ERROR: No matching distribution found for tensorflow-cpu==9.9",
    ]
    other = environment.failure(missing, "pip", tmp_path)  # the index answered: its own words, not "no network"
    assert str(other).startswith("pip failed; its last lines were:") and "tensorflow-cpu==9.9" in str(other)
    with pytest.raises(SetupError, match="unknown package set 'tpu'"):
        environment.pinned_requirements(("tpu",))
