"""The committed tiny product of ``tests/data/tiny`` is what ``tests/data/make_data.py`` writes, and says what it holds.

The tests read those files instead of rendering scenes at start-up; this module keeps them honest: a change to the
renderer or the writers that the frozen files no longer show fails here, until make_data.py is run again.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import rasterio

from .conftest import DATA, TINY, tiny_product

#: The JPEG2000 holds pixels only: its georeferencing is the PDS3 label's, as in the archive.
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def _make_data():
    spec = importlib.util.spec_from_file_location("make_data", DATA / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_are_what_make_data_writes(tmp_path):
    written = _make_data().write_tiny(tmp_path / "tiny")
    assert sorted(p.name for p in written) == sorted(p.name for p in TINY.iterdir())
    for path in written:
        committed = TINY / path.name
        if path.suffix == ".JP2":  # the same pixels (the encoder's bytes may change with its release)
            with rasterio.open(path) as new, rasterio.open(committed) as old:
                assert (new.dtypes, new.shape) == (old.dtypes, old.shape) == (("uint16",), (384, 512))
                np.testing.assert_array_equal(new.read(1), old.read(1))
        else:
            assert path.read_bytes() == committed.read_bytes(), path.name


def test_the_truth_file_counts_the_pixels_of_the_committed_image(tmp_path):
    """What the tests take from the truth file is what the JPEG2000 and the ice mask hold, read back."""
    product = tiny_product(tmp_path / "p")
    truth = product.truth
    assert json.loads((TINY / f"{product.product_id}_truth.json").read_text()) == truth
    with rasterio.open(product.image_path) as ds:
        dn = ds.read(1)
    assert dn.shape == (truth["height"], truth["width"]) == (384, 512)
    assert int(np.isin(dn, (1022, 1023)).sum()) == truth["special_pixels"] > 0
    assert int((dn == 0).sum()) == truth["nodata_pixels"] > 0
    ice = product.ice
    assert ice.shape == dn.shape and int(ice.sum()) == truth["ice_pixels"] > 0
    assert not (ice & (dn == 0)).any()  # no ice under the strip's no-data margins
    assert len(truth["ice_patches"]) >= 3
    assert product.label_path.read_text().count(f'PRODUCT_ID                = "{product.product_id}"') == 1
    assert product.dtm_path.stat().st_size > 4 * (512 // 4) * (384 // 4)  # label + 128 x 96 float32 heights
