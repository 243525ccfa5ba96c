"""Shared fixtures: small generated products made in temporary folders, and a QGIS runner.

QGIS never runs inside the pytest process (which holds TensorFlow and rasterio's own GDAL): QGIS
checks run ``/usr/bin/python3`` or ``/usr/bin/qgis_process.bin`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
DEMO_MODEL = REPO / "models" / "demo_xception_256.keras"


@pytest.fixture(scope="session")
def sample_product(tmp_path_factory):
    """A 3072 × 2048 px generated RED product at 0.5 m/px, -50.2° latitude (6 chunks, some with ice)."""
    from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    out = tmp_path_factory.mktemp("sample")
    return write_sample_product(
        out,
        SceneConfig(width=3072, height=2048, seed=7, incidence=68.0, n_ice_boulder=8),
        ProductGeometry(center_latitude=-50.2, center_longitude=31.4, solar_longitude=172.0),
    )


@pytest.fixture(scope="session")
def small_product(tmp_path_factory):
    """A 700 × 500 px product (smaller than one chunk) for quick reader tests."""
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    out = tmp_path_factory.mktemp("small")
    return write_sample_product(out, SceneConfig(width=700, height=500, seed=3, n_craters=1, n_boulders=80))


def qgis_env(home: Path) -> dict[str, str]:
    """Environment for a headless QGIS child with an isolated profile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PROJ_", "GDAL_"))}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(home), XDG_RUNTIME_DIR=str(home / "xdg"))
    (home / "xdg").mkdir(parents=True, exist_ok=True, mode=0o700)
    return env


def run_qgis_python(code: str, home: Path, timeout: int = 180) -> dict:
    """Run ``code`` with Debian's Python and QGIS in a subprocess; it must print one JSON object last."""
    prelude = (
        "import json, sys\n"
        "from qgis.core import QgsApplication\n"
        "QgsApplication.setPrefixPath('/usr', True)\n"
        "app = QgsApplication([], False)\n"
        "app.initQgis()\n"
    )
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=qgis_env(home),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def marsice_cli():
    """Run the CLI in a child process (as QGIS and users do); returns the CompletedProcess."""

    def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "marsice_plugin", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
        )

    return run
