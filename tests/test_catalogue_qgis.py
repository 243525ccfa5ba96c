"""The catalogue algorithms through a real headless QGIS (``qgis_process.bin``), never inside pytest."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from .catalogue_http import LocalServer, file_bytes, real_products, southern_product

pytestmark = pytest.mark.qgis

REPO = Path(__file__).resolve().parents[1]
QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")
_VENV_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PROJ_LIB", "PROJ_DATA", "GDAL_DATA")

if not QGIS_PROCESS.exists():
    pytest.skip(f"{QGIS_PROCESS} is not installed", allow_module_level=True)


def qgis(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _VENV_VARIABLES and not k.startswith("MARSICE_")}
    runtime = home / "xdg-runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(home), XDG_RUNTIME_DIR=str(runtime), QGIS_PLUGINPATH=str(REPO))
    return subprocess.run([str(QGIS_PROCESS), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("qgis-catalogue")
    proc = qgis(home, "plugins", "enable", "marsice_plugin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return home


def test_algorithms_are_listed(home: Path) -> None:
    proc = qgis(home, "--json", "list")
    algorithms = json.loads(proc.stdout)["providers"]["marsice"]["algorithms"]
    assert algorithms["marsice:search"]["name"] == "Search HiRISE products"
    assert algorithms["marsice:download"]["name"] == "Download HiRISE products"
    assert algorithms["marsice:search"]["group"] == "Catalogue"


def test_search_returns_the_paper_selection_as_a_layer(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "footprints.gpkg"
    proc = qgis(
        home, "--json", "run", "marsice:search", "--",
        "LAT_MIN=-60", "LAT_MAX=-40", "LS_FROM=140", "LS_TO=200", "SOURCE=2", f"OUTPUT={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert Path(json.loads(proc.stdout)["results"]["OUTPUT"].split("|")[0]) == out
    with sqlite3.connect(out) as db:
        (count,) = db.execute("SELECT count(*) FROM footprints").fetchone()
        types = {t for (t,) in db.execute("SELECT DISTINCT product_type FROM footprints")}
    assert count == 1409 and types == {"RED"}


def test_download_fetches_the_files_of_a_footprint_layer(home: Path, tmp_path: Path) -> None:
    with LocalServer() as server:
        server.products = [southern_product(real_products()[1], 11319, -49.0, 298.95, 150.0, server.base)]
        pid = server.products[0]["pdsid"]
        server.files = {f"{pid}.JP2": file_bytes(f"{pid}.JP2"), f"{pid}.LBL": file_bytes(f"{pid}.LBL", 9_000)}
        gpkg = tmp_path / "fp.gpkg"
        search = subprocess.run(
            [str(REPO / ".venv/bin/python"), "-m", "marsice_plugin", "search", "--lat", "-60", "-40", "--source", "ode",
             "--ode-url", f"{server.base}/many/live2/", "-o", str(gpkg)],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
        assert search.returncode == 0, search.stderr
        folder = tmp_path / "downloads"
        proc = qgis(home, "--json", "run", "marsice:download", "--", f"INPUT={gpkg}", f"FOLDER={folder}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads(proc.stdout)["results"]["FILES"] == 2
    assert (folder / f"{pid}.JP2").read_bytes() == file_bytes(f"{pid}.JP2")
    assert (folder / f"{pid}.LBL").read_bytes() == file_bytes(f"{pid}.LBL", 9_000)
