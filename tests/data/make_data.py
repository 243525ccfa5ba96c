#!/usr/bin/env python3
"""Write the tiny committed test products of ``tests/data/tiny/`` (run from the repository root).

The tests read these files instead of rendering a scene with the code under test at start-up: a fixture made by
the module it tests moves with that module, so a bug in the renderer or the product writer could hide itself.
They are made once here (with MarsIce's own renderer, at a size that keeps them to a few hundred KB), frozen and
committed beside this script; ``tests/test_data_fixtures.py`` regenerates them into a temporary folder and checks
that the committed files are still what this script writes, so the script stays the truth about them.

Written for the one product, ``ESP_090003_1300_RED`` (a 512 x 384 px RED product at 0.5 m/px, -50° latitude,
with the strip's skewed no-data margins, planted ice and hot pixels):

* ``ESP_090003_1300_RED.JP2`` + ``.LBL``: the image (10-bit lossless JPEG2000) and its detached PDS3 label;
* ``DTEEC_090003_1300_090004_1300_A01.IMG``: its DTM at 2 m/px (PDS3, attached label, 32-bit floats);
* ``ESP_090003_1300_RED_ice.png``: the planted ice, one bit per image pixel (1 = ice), on the image grid;
* ``ESP_090003_1300_RED_truth.json``: what was planted, counted (ice, hot and no-data pixels, the patches).

Run ``.venv/bin/python tests/data/make_data.py`` after a change to the renderer or the writers that the tests
should see, and commit what it writes.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TINY = HERE / "tiny"

#: The scene of the one product: a small ``small_product`` of old, with fewer boulders, so that its chunks read as
#: the models' training scenes do at every chunk size the tests use (the domain check does not warn on it).
SCENE = {"width": 512, "height": 384, "seed": 3, "n_craters": 1, "n_boulders": 40}
#: The DTM's pixel is this many image pixels across (2 m/px for the 0.5 m/px image, as real HiRISE DTMs).
DTM_FACTOR = 4


def write_tiny(out: Path) -> list[Path]:
    """Render the product and write its files into ``out`` (created); returns the written paths, sorted."""
    from PIL import Image

    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        sample = write_sample_product(scratch, SceneConfig(**SCENE), dtm_factor=DTM_FACTOR)
        assert sample.dtm_path is not None
        # the truth GeoPackage is left out: ~90 KB of SQLite pages for a handful of polygons; the mask says more
        written = [shutil.copy(p, out / p.name) for p in (sample.image_path, sample.label_path, sample.dtm_path)]
    scene = sample.scene
    mask = out / f"{sample.product_id}_ice.png"
    Image.fromarray(scene.ice.astype(np.uint8) * 255).convert("1").save(mask, optimize=True)
    truth = {
        "product_id": sample.product_id,
        "scene": SCENE,
        "dtm_factor": DTM_FACTOR,
        "width": int(scene.dn.shape[1]),
        "height": int(scene.dn.shape[0]),
        "ice_pixels": int(scene.ice.sum()),
        "hot_pixels": int(scene.hot.sum()),
        "special_pixels": int(np.isin(scene.dn, (1022, 1023)).sum()),
        "nodata_pixels": int(scene.nodata.sum()),
        "ice_patches": [{k: _plain(v) for k, v in patch.items()} for patch in scene.ice_patches],
    }
    path = out / f"{sample.product_id}_truth.json"
    path.write_text(json.dumps(truth, indent=1) + "\n")
    return sorted([*map(Path, written), mask, path])


def _plain(value: object) -> object:
    """JSON-able numbers: numpy scalars as Python ones, floats rounded to what the renderer's draws mean."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def main() -> int:
    for path in write_tiny(TINY):
        print(f"{path.relative_to(HERE.parents[1])}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere: the package is the repository's
    sys.exit(main())
