"""``marsice:site_history`` through a real headless QGIS (``qgis_process.bin``), never imported inside pytest."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_qgis_python
from tests.test_sites import write_catalogue, write_results

pytestmark = pytest.mark.qgis

REPO = Path(__file__).resolve().parents[1]
QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")
_VENV_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PROJ_LIB", "PROJ_DATA", "GDAL_DATA")


def qgis(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _VENV_VARIABLES and not k.startswith("MARSICE_")}
    runtime = home / "xdg-runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(home), XDG_RUNTIME_DIR=str(runtime), QGIS_PLUGINPATH=str(REPO))
    return subprocess.run([str(QGIS_PROCESS), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_site_history_runs_in_qgis(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert qgis(home, "plugins", "enable", "marsice_plugin").returncode == 0
    results = write_results(tmp_path / "results.gpkg")
    footprints = write_catalogue(tmp_path / "footprints.gpkg")
    out = tmp_path / "sites.gpkg"
    proc = qgis(
        home, "--json", "run", "marsice:site_history", "--",
        f"INPUT={results}", f"FOOTPRINTS={footprints}", "TOLERANCE_M=20", f"OUTPUT={out}",
        f"PULL_MISSING={tmp_path / 'queue.txt'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["algorithm_details"]["name"] == "Site history"
    outputs = doc["results"]
    assert outputs["SITES"] == 2 and outputs["OBSERVATIONS"] == 10  # both sites lie in all five footprints
    assert Path(outputs["QUEUE"]).read_text() == "ESP_030201_1297_RED\n"
    plots = sorted(Path(outputs["PLOTS_FOLDER"]).glob("*.png"))
    assert Path(outputs["PLOTS_FOLDER"]) == tmp_path / "sites_plots" and len(plots) == 2
    with contextlib.closing(sqlite3.connect(out)) as db:
        linked = sorted(Path(p) for (p,) in db.execute("SELECT plot FROM sites"))
    assert linked == plots

    code = (
        "from qgis.core import QgsVectorLayer\n"
        f"sites = QgsVectorLayer('{out}|layername=sites', 's', 'ogr')\n"
        f"obs = QgsVectorLayer('{out}|layername=site_observations', 'o', 'ogr')\n"
        "print(json.dumps({'valid': [sites.isValid(), obs.isValid()], 'crs_ok': sites.crs().isValid(),"
        " 'radius': sites.crs().toProj(), 'n': [sites.featureCount(), obs.featureCount()],"
        " 'spatial': obs.isSpatial()}))\n"
    )
    opened = run_qgis_python(code, home)
    assert opened["valid"] == [True, True] and opened["crs_ok"] and "+R=3396190" in opened["radius"]
    assert opened["n"] == [2, 10] and opened["spatial"] is False
