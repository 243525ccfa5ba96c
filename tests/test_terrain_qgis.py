"""``marsice:terrain`` through a real headless QGIS (``qgis_process.bin``), never imported inside pytest."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import rasterio

from marsice_plugin.synthetic.product_writer import write_sample_product
from marsice_plugin.synthetic.scene import SceneConfig

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


def test_terrain_attributes_runs_in_qgis(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert qgis(home, "plugins", "enable", "marsice_plugin").returncode == 0
    listing = json.loads(qgis(home, "--json", "list").stdout)["providers"]["marsice"]["algorithms"]
    assert listing["marsice:terrain"]["name"] == "Terrain attributes"
    sp = write_sample_product(tmp_path / "p", SceneConfig(width=1024, height=1024, seed=3), dtm_factor=4)
    folder = tmp_path / "terrain"
    proc = qgis(
        home, "--json", "run", "marsice:terrain", "--",
        f"DTM={sp.dtm_path}", f"INPUT={sp.label_path}", f"OUTPUT={folder}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(proc.stdout)["results"]
    assert results["PEAK_RATIO"] > 2.0
    assert Path(results["SLOPE"]) == folder / f"{sp.product_id}_slope.tif"
    with rasterio.open(results["SHADOW"]) as ds:
        # the DTM's grid: 256 posts of 2 m under the 1024 px of 0.5 m (257 with a fractional offset)
        assert ds.width in (256, 257) and ds.height in (256, 257) and ds.res == (2.0, 2.0) and ds.read(1).max() >= 1
