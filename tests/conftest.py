"""Shared fixtures (the committed tiny product, one generated scene for the end-to-end checks), a QGIS runner,
and how tests are shared out between pytest-xdist workers.

QGIS never runs inside the pytest process (which holds TensorFlow and rasterio's own GDAL): QGIS
checks run ``/usr/bin/python3`` or ``/usr/bin/qgis_process.bin`` in a subprocess.

``make test`` runs the suite on two xdist workers with ``--dist loadgroup``. A session or module fixture is made
once per worker that runs a test needing it, so :func:`pytest_collection_modifyitems` keeps the tests sharing an
expensive one on one worker: the generated scene's tests together, and each module with a module fixture whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3  # noqa: F401 - before any TensorFlow import: see marsice_plugin/__init__.py
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
DEMO_MODEL = REPO / "models" / "demo_xception_256.keras"
#: The committed tiny product (``tests/data/make_data.py`` writes it).
TINY = DATA / "tiny"
#: SceneConfig fields that switch off every random landform, decoy and planted patch: the scene holds only its
#: relief, the boulders it asks for and what the test plants (``ice_at``), so a figure is the planted thing's alone.
QUIET_SCENE = dict(
    n_craters=0,
    polygons=False,
    n_ice_boulder=0,
    n_ice_crater=0,
    n_dust=0,
    n_dark_spots=0,
    n_hot_special=0,
    n_hot_ordinary=0,
    nodata_margin=0.0,
)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group tests for ``--dist loadgroup``: those of the generated scene, and each module with a module fixture."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        defs = fixtures.name2fixturedefs.values() if fixtures is not None else ()
        if "sample_product" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("sample_product"))
        elif any(d[-1].scope in ("module", "class") for d in defs if d):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(scope="session")
def sample_product(tmp_path_factory):
    """A 3072 × 2048 px generated RED product at 0.5 m/px, -50.2° latitude (6 chunks, some with ice).

    Rendered once per worker (about 10 s): only for the end-to-end checks that need a realistic scene (the
    detector ranks chunks with planted ice above the others); tests that need *a* product take ``small_product``.
    """
    from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    out = tmp_path_factory.mktemp("sample")
    return write_sample_product(
        out,
        SceneConfig(width=3072, height=2048, seed=7, incidence=68.0, n_ice_boulder=8),
        ProductGeometry(center_latitude=-50.2, center_longitude=31.4, solar_longitude=172.0),
    )


@dataclass(frozen=True)
class TinyProduct:
    """A committed product of ``tests/data/tiny`` (written by ``tests/data/make_data.py``) and what was planted."""

    product_id: str
    label_path: Path
    image_path: Path
    dtm_path: Path
    truth: dict

    @property
    def ice(self) -> np.ndarray:
        """The planted ice (bool, on the image grid)."""
        from PIL import Image

        with Image.open(self.label_path.with_name(f"{self.product_id}_ice.png")) as mask:
            return np.asarray(mask.convert("L")) > 0


def tiny_product(folder: Path) -> TinyProduct:
    """Copy the committed tiny product into ``folder`` (so nothing a test runs writes beside the committed files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in TINY.iterdir():
        if path.is_file():
            shutil.copy(path, folder / path.name)
    truth = json.loads(next(folder.glob("*_truth.json")).read_text())
    pid = truth["product_id"]
    dtm = next(folder.glob("DTEEC_*.IMG"))
    return TinyProduct(pid, folder / f"{pid}.LBL", folder / f"{pid}.JP2", dtm, truth)


@pytest.fixture(scope="session")
def small_product(tmp_path_factory) -> TinyProduct:
    """The committed 512 × 384 px product with its DTM (smaller than one chunk), for tests that need *a* product.

    Not rendered here: the files are frozen in ``tests/data/tiny`` (see ``tests/data/make_data.py``). Tests that
    change the product copy it first (``tiny_product(tmp_path / "p")``).
    """
    return tiny_product(tmp_path_factory.mktemp("small"))


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


#: The plain progress line a command prints every few seconds when stderr is not a terminal (marsice_plugin.progress).
PROGRESS_LINE = re.compile(r"^\[\s*[\d.]+%\] ")


def message_lines(stderr: str) -> list[str]:
    """stderr without its periodic progress lines: what a command says beyond how far it has got."""
    return [line for line in stderr.strip().splitlines() if not PROGRESS_LINE.match(line)]
