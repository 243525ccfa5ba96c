"""Real-tile training data: the held-out rule, the observation split, the sun lookup, and patches planted where the
physics puts them (ice at a shadow's anti-sun end or poleward of its caster, decoys in sunlight). Built on tiny
tiles made here."""

from __future__ import annotations

import csv
import gzip

import numpy as np
import pytest
from PIL import Image

from marsice_plugin.cnn.augment import direction
from marsice_plugin.cnn.planting import plant, shadow_sites
from marsice_plugin.cnn.real_tiles import (
    open_tiles,
    real_examples,
    split_observations,
    sun_azimuths,
    tile_input,
)
from marsice_plugin.errors import TrainingDataError

SUN = 270.0  # light from the west: shadows point east (+col)


def shadowed_tile(size: int = 96) -> np.ndarray:
    """Mid-grey plains with one boulder shadow: a dark bar east of a bright sunlit face, rows 40-50, cols 40-52."""
    rng = np.random.default_rng(0)
    grey = 120 + 4 * rng.standard_normal((size, size))
    grey[40:50, 36:40] = 200  # sunlit west face of the caster
    grey[40:50, 40:52] = 30  # its shadow, pointing away from the sun
    return grey.astype(np.float32)


def test_shadow_sites_find_the_shadow_and_order_its_ends_by_the_sun():
    sites = shadow_sites(shadowed_tile(), SUN)
    assert len(sites) == 1
    site = sites[0]
    assert site.far_end[1] == pytest.approx(51, abs=1)  # the anti-sun (east) end
    assert site.sun_end[1] == pytest.approx(40, abs=1)
    assert site.length_px == pytest.approx(11, abs=1.5)
    assert shadow_sites(np.full((64, 64), 120.0, dtype=np.float32), SUN) == []  # no shade, no site


@pytest.mark.parametrize("seed", range(5))
def test_ice_lands_at_the_anti_sun_end_and_decoys_on_the_sunlit_side(seed):
    grey = shadowed_tile()
    ice, ice_mask = plant(grey, SUN, np.random.default_rng(seed), "ice")
    decoy, decoy_mask = plant(grey, SUN, np.random.default_rng(seed), "decoy")
    assert ice_mask.sum() >= 2 and decoy_mask.sum() >= 2
    east = direction(90.0)
    cols = np.arange(grey.shape[1])
    ice_col = cols[ice_mask.any(axis=0)].mean()
    decoy_col = cols[decoy_mask.any(axis=0)].mean()
    assert east[1] == pytest.approx(1.0)
    assert ice_col > 46  # at or past the shadow's east end
    assert decoy_col < 40  # west of the shadow, on the caster's sunlit side
    # brighter only where planted (up to the diffuse edge), never darker, clipped at the 8-bit ceiling
    assert np.all(ice >= grey - 1e-4) and ice.max() <= 255
    assert (ice - grey)[ice_mask].min() > 0
    far = np.ones_like(ice_mask)
    far[30:62, 20:75] = False
    np.testing.assert_array_equal(ice[far], grey[far])


@pytest.mark.parametrize("seed", range(6))
def test_poleward_ice_lands_beside_the_caster_on_the_pole_side(seed):
    """The paper's criterion, as the renderer places boulder ice: poleward of the caster, not at the shadow's far
    end; the pole is south of a north-up tile in the south and north in the north. Decoys stay in sunlight: on the
    caster's sunlit face or beyond the shadow's anti-sun end, never in it."""
    grey = shadowed_tile()  # caster face cols 36-39, shadow rows 40-49, cols 40-51
    site = shadow_sites(grey, SUN)[0]
    assert site.sun_side == pytest.approx((44.5, 40.0), abs=0.6)
    assert 8 <= site.width_px <= 13  # the shadow is 10 rows across the sun; the 3 px mean blurs its edges
    rows, cols = np.arange(grey.shape[0]), np.arange(grey.shape[1])
    for latitude, south in ((-50.0, True), (45.0, False)):
        ice, mask = plant(grey, SUN, np.random.default_rng(seed), "ice", geometry="poleward", latitude=latitude)
        assert mask.sum() >= 2 and np.all(ice >= grey - 1e-4)
        row, col = rows[mask.any(axis=1)].mean(), cols[mask.any(axis=0)].mean()
        assert (row > 47) if south else (row < 42)  # beyond the caster's pole-side half
        assert 28 < col < 44  # beside the caster, short of the shadow's far end (col 51)
    for _ in range(3):
        _, decoy = plant(grey, SUN, np.random.default_rng(seed + 10 * _), "decoy", geometry="poleward")
        col = cols[decoy.any(axis=0)].mean()
        assert col < 40 or col > 52
    with pytest.raises(ValueError, match="geometry"):
        plant(grey, SUN, np.random.default_rng(0), "ice", geometry="equatorward")


@pytest.mark.parametrize("seed", range(3))
def test_planted_radius_range_sets_the_patch_size(seed):
    """The second stage plants 2-12 px radii (1-6 m at 0.5 m per crop pixel), the chunk CNN 0.8-4.5 tile px."""
    grey = shadowed_tile(160)
    _, small = plant(grey, SUN, np.random.default_rng(seed), "ice")
    _, large = plant(grey, SUN, np.random.default_rng(seed), "ice", radius_px=(8.0, 12.0))
    # an ellipse of radius r and aspect 1-2 covers pi r^2 / aspect to pi r^2 pixels at opacity > 0.5, edges aside
    assert 2 <= small.sum() <= np.pi * 4.5**2 * 1.5
    assert large.sum() >= np.pi * 8.0**2 / 2 * 0.6
    assert large.sum() > 3 * small.sum()


def test_a_tile_without_shade_gets_no_patch():
    flat = np.full((64, 64), 120.0, dtype=np.float32)
    out, mask = plant(flat, SUN, np.random.default_rng(0), "ice", count=3)
    assert not mask.any()
    np.testing.assert_array_equal(out, flat)
    with pytest.raises(ValueError, match="'ice' or 'decoy'"):
        plant(flat, SUN, np.random.default_rng(0), "dust")


def landmark_folder(tmp_path, observations: int = 10):
    """A tiles.csv in the landmark layout: per observation one ice-free open tile, plus held-out and frost rows."""
    root = tmp_path / "landmark"
    (root / "crater").mkdir(parents=True)
    rows = []
    index = [["FILE_NAME", "SUB_SOLAR_AZIMUTH", "NORTH_AZIMUTH"]]
    for i in range(observations):
        obs = f"ESP_0{i:05d}_1950"
        for split, prior in (("open", "no_frost_expected (low latitude)"), ("heldout", "no_frost_expected (x)")):
            name = f"crater/{obs}_{split}.png"
            Image.fromarray(shadowed_tile().clip(0, 255).astype(np.uint8)).save(root / name)
            rows.append([name, "crater", obs, split, prior])
        frost = f"crater/{obs}_frost.png"
        Image.fromarray(np.full((64, 64), 200, np.uint8)).save(root / frost)
        rows.append([frost, "bright_dune", obs, "open", "frost_likely (bright dunes)"])
        index.append([f"{obs}_COLOR.IMG", str(300.0 + i), "30.0"])
    with (root / "tiles.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "class", "observation", "split", "frost_prior"])
        w.writerows(rows)
    idx = tmp_path / "index.csv.gz"
    with gzip.open(idx, "wt", encoding="utf-8") as fh:
        fh.write("\ufeff")  # the real index starts with a byte-order mark
        csv.writer(fh).writerows(index)
    return root, idx


def test_open_tiles_never_read_held_out_or_frost_rows_and_split_by_observation(tmp_path):
    root, idx = landmark_folder(tmp_path)
    train, tune = open_tiles(root, idx, "train"), open_tiles(root, idx, "tune")
    names = [t.path.name for t in train + tune]
    assert len(names) == 10 and all(n.endswith("_open.png") for n in names)
    assert len(tune) == 2  # 20 % of 10 observations
    assert not {t.observation for t in train} & {t.observation for t in tune}
    suns, in_image = sun_azimuths(idx), sun_azimuths(idx, frame="image")
    assert suns["ESP_000003_1950"] == pytest.approx(273.0)  # from north: (303 - 30) mod 360
    assert in_image["ESP_000003_1950"] == pytest.approx(33.0)  # in the image, from up: 303 - 270
    assert all(t.sun_azimuth == in_image[t.observation] for t in train)  # tiles are planted and turned in the image
    with pytest.raises(ValueError, match="frame"):
        sun_azimuths(idx, frame="grid")
    # the split is fixed: the same observations every time, whatever order they come in
    assert split_observations([t.observation for t in train + tune][::-1])[1] == {t.observation for t in tune}
    with pytest.raises(TrainingDataError, match="tiles.csv"):
        open_tiles(tmp_path, idx, "train")


def test_real_examples_pair_each_tile_with_its_planted_copy(tmp_path):
    root, idx = landmark_folder(tmp_path, observations=5)
    tiles = open_tiles(root, idx, "train")
    x, y, sun = real_examples(tiles, 32, seed=0)
    assert x.shape == (2 * len(tiles), 32, 32, 1) and y.sum() == len(tiles)  # every tile has its shadow
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(sun.tolist()) == {t.sun_azimuth for t in tiles}
    # a positive is its tile plus bright pixels: brighter in total than the plain tile
    plain = tile_input(np.asarray(Image.open(tiles[0].path), dtype=np.float32), 32)
    assert x[1, ..., 0].sum() > plain.sum()
    bad = tmp_path / "bad.csv"
    bad.write_text("FILE_NAME,OTHER\nx,1\n")
    with pytest.raises(TrainingDataError, match="SUB_SOLAR_AZIMUTH"):
        sun_azimuths(bad)
