"""The second stage's training examples follow the rule's seed level: a faint patch is an example only when the
rule that feeds the model at that level outlines it (``--search all`` seeds at 25 %, flagged search at 50 %)."""

from __future__ import annotations

import numpy as np

from marsice_plugin.candidates import SMALL_PATCH_CONTRAST
from marsice_plugin.patches.crops import CROP_PX
from marsice_plugin.patches.training import array_examples


def _faint_patch(contrast: float) -> np.ndarray:
    """A 400 px grey image at 0.5 m/px, textured, with one 6 m disc ``contrast`` over its background."""
    rng = np.random.default_rng(3)
    grey = 100.0 + rng.normal(0.0, 1.5, (400, 400))
    rows, cols = np.mgrid[:400, :400]
    grey[(rows - 200) ** 2 + (cols - 220) ** 2 <= 6**2] *= 1.0 + contrast
    return grey.astype(np.float32)


def test_a_patch_30_percent_over_its_background_is_an_example_at_25_not_at_50():
    grey = _faint_patch(0.3)
    default = array_examples(grey, 0.5, 300.0, "faint")
    small = array_examples(grey, 0.5, 300.0, "faint", min_contrast=SMALL_PATCH_CONTRAST)
    assert default.x == []
    assert len(small.x) == 1 and small.y == [0.0] and small.source == ["faint"]
    crop = small.x[0]
    assert crop.shape == (CROP_PX, CROP_PX, 2)
    assert 0 < crop[..., 1].sum() < CROP_PX * CROP_PX  # the outline channel marks the patch, not the whole crop


def test_a_bright_patch_is_an_example_at_either_level():
    grey = _faint_patch(1.0)
    assert len(array_examples(grey, 0.5, 300.0, "bright").x) == 1
    assert len(array_examples(grey, 0.5, 300.0, "bright", min_contrast=SMALL_PATCH_CONTRAST).x) == 1


def test_a_planted_patch_is_labelled_ice_by_the_share_of_its_pixels_on_the_mask():
    """Real tiles with planted patches give positives: the outline on the planted mask is ice, others are not."""
    grey = _faint_patch(1.0)
    rows, cols = np.mgrid[:400, :400]
    grey[(rows - 80) ** 2 + (cols - 90) ** 2 <= 5**2] *= 2.0  # a second bright patch, not planted
    planted = (rows - 200) ** 2 + (cols - 220) ** 2 <= 6**2
    ex = array_examples(grey, 0.5, 300.0, "planted", ice=planted)
    assert sorted(ex.y) == [0.0, 1.0]
    assert sorted(ex.touches_ice) == [False, True]
    edge = planted & (cols >= 225)  # a mask over under a fifth of the outline: touching, not ice
    ex = array_examples(grey, 0.5, 300.0, "planted", ice=edge)
    assert ex.y == [0.0, 0.0] and sorted(ex.touches_ice) == [False, True]
