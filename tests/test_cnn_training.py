"""Training: sun-aware augmentation, labelled chunks from folders and tile indexes, the learning signal."""

from __future__ import annotations

import json
import math
import zipfile

import h5py
import numpy as np
import pytest

from marsice_plugin.cnn.augment import SunAwareAugmenter, mirror_across_sun, rotate
from marsice_plugin.cnn.chunk_data import TrainingDataError, load_folders, load_labelled, load_tile_index
from marsice_plugin.synthetic import illumination
from marsice_plugin.synthetic.terrain import Boulder, add_boulders


def lit_boulder(sun_azimuth: float, row: float = 70.0, col: float = 125.0) -> np.ndarray:
    """A north-up chunk: grey ground, one bright boulder, its cast shadow (renderer's ray-marching)."""
    scale = 0.5
    height = np.zeros((200, 200), np.float32)
    add_boulders(height, [Boulder(col, row, 2.5, 2.5)], scale)
    shadow = illumination.cast_shadows(height, scale, azimuth_deg=sun_azimuth, incidence_deg=70.0) & (height == 0)
    image = np.full(height.shape, 0.5, np.float32)
    image[height > 0] = 0.9
    image[shadow] = 0.1
    return image


def shadow_bearing(image: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Bearing (from north) of the shadow's centroid seen from the boulder, and both pixel sets."""
    boulder = np.argwhere(image > 0.75)
    shadow = np.argwhere(image < 0.25)
    (br, bc), (sr, sc) = boulder.mean(axis=0), shadow.mean(axis=0)
    return math.degrees(math.atan2(sc - bc, -(sr - br))) % 360.0, boulder, shadow


def on_anti_sun_side(boulder: np.ndarray, shadow: np.ndarray, sun_azimuth: float) -> float:
    """Fraction of shadow pixels lying on the side of the boulder away from the sun."""
    sun = np.array([-math.cos(math.radians(sun_azimuth)), math.sin(math.radians(sun_azimuth))])
    return float(((shadow - boulder.mean(axis=0)) @ sun < 0).mean())


def test_rendered_shadow_points_away_from_the_sun():
    bearing, boulder, shadow = shadow_bearing(lit_boulder(297.0))
    assert bearing == pytest.approx(117.0, abs=6.0)
    assert on_anti_sun_side(boulder, shadow, 297.0) == 1.0


def test_mirror_across_the_sun_axis_keeps_shadows_where_the_sun_puts_them():
    original = lit_boulder(297.0)
    mirrored = mirror_across_sun(original, 297.0)
    bearing, boulder, shadow = shadow_bearing(mirrored)
    assert bearing == pytest.approx(117.0, abs=6.0)
    assert on_anti_sun_side(boulder, shadow, 297.0) > 0.97
    # the boulder did move (it is off the axis), so the chunk really changed
    assert np.abs(boulder.mean(axis=0) - np.argwhere(original > 0.75).mean(axis=0)).max() > 10
    # the forbidden augmentation: an east-west mirror turns the afternoon shadow into a morning one
    wrong, _, _ = shadow_bearing(original[:, ::-1])
    assert wrong == pytest.approx(360.0 - 117.0, abs=6.0)


def test_mirror_keeps_every_pixel_so_the_label_cannot_change():
    """Pixels the reflection pushes out of the square are exactly those whose places it leaves empty."""
    rng = np.random.default_rng(1)
    ice = np.zeros((128, 128), np.float32)
    for r, c in rng.integers(0, 124, size=(40, 2)):  # patches everywhere, corners included
        ice[r : r + 4, c : c + 4] = 1.0
    out = mirror_across_sun(ice, 297.0)
    assert out.sum() == pytest.approx(ice.sum(), rel=0.03)
    flipped = mirror_across_sun(np.arange(64.0).reshape(8, 8), 270.0)  # a west sun: the axis is east-west
    np.testing.assert_allclose(flipped, np.arange(64.0).reshape(8, 8)[::-1], atol=1e-9)  # a north-south flip


def test_rotations_stay_inside_the_sun_band():
    aug = SunAwareAugmenter()
    assert aug.rotation_range(297.0) == pytest.approx((-7.0, 6.0))
    assert aug.rotation_range(120.0) == (0.0, 0.0)  # outside the band: no rotation is justified
    rotated = rotate(lit_boulder(297.0, row=100, col=100), 6.0)
    bearing, boulder, shadow = shadow_bearing(rotated)
    assert bearing == pytest.approx(123.0, abs=6.0)  # the same ground under a sun at 303°
    assert on_anti_sun_side(boulder, shadow, 303.0) > 0.97


def test_augmenter_output_keeps_the_shadow_side_over_many_draws():
    aug = SunAwareAugmenter(noise=0.0, gain=0.0, offset=0.0)
    rng = np.random.default_rng(5)
    image = lit_boulder(297.0)
    bearings = [shadow_bearing(aug(image[..., None], 297.0, rng)[..., 0])[0] for _ in range(12)]
    assert all(110.0 - 6 <= b <= 123.0 + 6 for b in bearings)


def write_png(path, value: int, bits: int = 8) -> None:
    from PIL import Image

    arr = np.full((64, 64), value, dtype=np.uint8 if bits == 8 else np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folders_of_chunk_images_are_read_with_their_labels(tmp_path):
    for i in range(3):
        write_png(tmp_path / "0" / f"a{i}.png", 51)
        write_png(tmp_path / "1" / f"b{i}.png", 255)
    write_png(tmp_path / "1" / "c16.png", 65535, bits=16)
    (tmp_path / "1" / "notes.txt").write_text("not an image")
    chunks = load_folders(tmp_path, input_size=32)
    assert chunks.x.shape == (7, 32, 32, 1)
    assert chunks.y.tolist() == [0, 0, 0, 1, 1, 1, 1]
    np.testing.assert_allclose(chunks.x[0], 0.2, atol=1e-6)  # 51 / 255
    np.testing.assert_allclose(chunks.x[-1], 1.0)  # 16-bit full scale
    assert chunks.describe() == {"source": str(tmp_path), "chunks": 7, "positives": 4, "negatives": 3}


def test_folder_without_the_paper_layout_is_refused(tmp_path):
    write_png(tmp_path / "0" / "a.png", 10)
    with pytest.raises(TrainingDataError, match=r"sub-folders 0/ \(no ice\) and 1/ \(ice\).*missing: 1/"):
        load_labelled(tmp_path, 32)


def test_tile_index_labelled_in_qgis_is_training_data(small_product, tmp_path):
    from marsice_plugin.tile_export import export_tiles

    export = export_tiles(small_product.label_path, tmp_path, size=256, overlap=0)
    # labels set as QGIS sets them: through a connection that has the SQL functions the R-tree triggers call
    from marsice_plugin.gpkg import connect

    con = connect(export.index, read_only=False)
    ids = [r[0] for r in con.execute("SELECT fid FROM tiles WHERE file IS NOT NULL ORDER BY fid")]
    con.executemany("UPDATE tiles SET label = ? WHERE fid = ?", [(i % 2, fid) for i, fid in enumerate(ids[:4])])
    con.close()
    chunks = load_tile_index(export.index, input_size=64)
    assert len(chunks.y) == 4 and chunks.y.tolist() == [0, 1, 0, 1]
    # the GeoTIFFs carry the DN scale and the sun: inputs are DN / 1023, the sun from the label
    from marsice_plugin.product import open_product

    with open_product(small_product.label_path) as product:
        sun = product.viewing.sun_azimuth_from_north
    assert chunks.sun_azimuth.tolist() == pytest.approx([sun] * 4, abs=1e-3)
    assert 0.0 < chunks.x.mean() < 1.0
    import rasterio

    with rasterio.open(tmp_path / chunks.files[0]) as ds:
        assert float(ds.tags()["VALID_MAX"]) == 1023.0
        np.testing.assert_allclose(chunks.x[0, :, :, 0].mean(), np.nanmean(ds.read(1)) / 1023.0, rtol=0.02)


def test_unlabelled_tile_index_says_what_to_do(small_product, tmp_path):
    from marsice_plugin.tile_export import export_tiles

    export = export_tiles(small_product.label_path, tmp_path, size=256, overlap=0, images=False)
    with pytest.raises(TrainingDataError, match="no labelled chunks; set 'label' to 1"):
        load_tile_index(export.index, 64)


def test_tiny_model_learns_and_reloads_identically(tmp_path):
    """A few generated chunks, three epochs: the loss falls and the saved file predicts like the trained model."""
    from marsice_plugin.cnn.model import load_model
    from marsice_plugin.cnn.train import TrainingConfig, train
    from marsice_plugin.cnn.training_data import synthetic_chunks

    x, y, sun = synthetic_chunks(24, seed=3000, size=256, input_size=64, workers=1)
    assert 0 < y.sum() < len(y)
    config = TrainingConfig(input_size=64, epochs=3, batch_size=8, validation_split=0.25, bn_momentum=0.9)
    kept: dict = {}
    history = train(x, y, config, tmp_path / "tiny.keras", sun_azimuth=sun, keep=kept)
    assert history["loss"][-1] < history["loss"][0]
    reloaded = load_model(tmp_path / "tiny.keras")
    np.testing.assert_array_equal(
        np.asarray(reloaded.predict_on_batch(x[:6])), np.asarray(kept["model"].predict_on_batch(x[:6]))
    )
    with zipfile.ZipFile(tmp_path / "tiny.keras") as saved, h5py.File(saved.open("model.weights.h5")) as weights:
        assert "optimizer" not in weights  # weights for inference only: no Adam moments
    card = json.loads((tmp_path / "tiny.card.json").read_text())
    assert card["training"]["augment"] == "sun" and card["training"]["input_size"] == 64
    assert card["samples"] == {"train": 18, "validation": 6, "positive_fraction": pytest.approx(float(y.mean()))}
    assert (tmp_path / "tiny.curves.png").stat().st_size > 5000

    # Fine-tuning starts from exactly the saved weights, at the saved size or at another one.
    from marsice_plugin.cnn.model import model_input_size
    from marsice_plugin.cnn.train import initial_model

    start = initial_model(TrainingConfig(input_size=64, init=str(tmp_path / "tiny.keras")))
    for a, b in zip(start.get_weights(), kept["model"].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    larger = initial_model(TrainingConfig(input_size=128, init=str(tmp_path / "tiny.keras")))
    assert model_input_size(larger) == 128
    for a, b in zip(larger.get_weights(), kept["model"].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_keep_best_saves_the_epoch_with_the_lowest_validation_loss(tmp_path):
    """The saved file scores the validation chunks exactly as the best epoch did, not as the last one."""
    import keras

    from marsice_plugin.cnn.model import load_model
    from marsice_plugin.cnn.train import TrainingConfig, split_indices, train
    from marsice_plugin.cnn.training_data import synthetic_chunks

    x, y, sun = synthetic_chunks(24, seed=3100, size=256, input_size=64, workers=1)
    config = TrainingConfig(
        input_size=64, epochs=4, batch_size=8, validation_split=0.25, bn_momentum=0.9, learning_rate=3e-3,
        keep_best=True,
    )  # fmt: skip
    history = train(x, y, config, tmp_path / "best.keras", sun_azimuth=sun)
    best = int(np.argmin(history["val_loss"]))
    card = json.loads((tmp_path / "best.card.json").read_text())
    assert card["saved_epoch"]["epoch"] == best + 1
    _, val = split_indices(len(x), config.validation_split, config.seed)
    p = np.asarray(load_model(tmp_path / "best.keras").predict_on_batch(x[val])).reshape(-1)
    loss = float(keras.losses.binary_crossentropy(y[val], p))
    assert loss == pytest.approx(history["val_loss"][best], rel=1e-3)


def test_train_cli_from_folders(marsice_cli, tmp_path):
    rng = np.random.default_rng(0)
    from PIL import Image

    for label in (0, 1):
        (tmp_path / "data" / str(label)).mkdir(parents=True)
        for i in range(5):
            arr = (rng.random((128, 128)) * 120 + 40 + 80 * label).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / "data" / str(label) / f"{i}.png")
    out = tmp_path / "m" / "folders.keras"
    proc = marsice_cli(
        "--progress", "json", "train", str(tmp_path / "data"), "-o", str(out), "--input-size", "64", "--epochs", "1",
        "--bn-momentum", "0.9",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = [json.loads(line) for line in proc.stdout.splitlines() if '"result"' in line][-1]
    assert result["outputs"]["MODEL"] == str(out)
    card = json.loads(out.with_suffix(".card.json").read_text())
    assert card["training"]["data"] == {"source": str(tmp_path / "data"), "chunks": 10, "positives": 5, "negatives": 5}
    proc = marsice_cli("train", "-o", str(out))
    assert proc.returncode == 2 and "give either DATA" in proc.stderr.strip().splitlines()[-1]

    # Fine-tune the model just trained, at another input size: the started-from weights carry over to a net of that
    # size and the card records the start. Its card says it was read at level 2: starting from a model read at
    # another level is said, not silently mixed. (One child for the three: each training child costs ~8 s.)
    start = json.loads(out.with_suffix(".card.json").read_text())
    assert start["read_level"] == 0
    out.with_suffix(".card.json").write_text(json.dumps({**start, "read_level": 2}))
    larger = tmp_path / "m" / "larger.keras"
    proc = marsice_cli(
        "--progress", "json", "train", str(tmp_path / "data"), "-o", str(larger), "--init", str(out), "--input-size",
        "128", "--epochs", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    card = json.loads(larger.with_suffix(".card.json").read_text())
    assert card["training"]["init"] == str(out) and card["training"]["input_size"] == 128
    assert card["training"]["bn_momentum"] == pytest.approx(0.9)  # the started-from net's, not the 0.99 default
    warnings = [json.loads(line)["message"] for line in proc.stdout.splitlines() if '"warning"' in line]
    assert any("read at JPEG2000 level 2, these are read at level 0" in w for w in warnings), warnings
    assert card["read_level"] == 0  # the level these chunks were read at, not the started-from model's
    from marsice_plugin.cnn.model import load_model, model_input_size
    from marsice_plugin.commands.train import resolve_input_size

    assert model_input_size(load_model(larger)) == 128
    # without --input-size, train takes the started-from model's (the function the command calls with its options)
    assert resolve_input_size(None, out) == 64 and resolve_input_size(128, out) == 128


def test_edge_band_is_a_skewed_strip_margin_on_one_side():
    from marsice_plugin.cnn.training_data import edge_band

    for seed in range(20):
        band = edge_band(np.random.default_rng(seed), 200)
        widths = band.sum(axis=1)
        assert widths.min() >= 0.03 * 200 - 1 and widths.max() <= 0.25 * 200 + 1
        assert np.all(np.abs(np.diff(widths)) <= 1)  # straight, skewed edge: width changes linearly down the rows
        left = band[:, 0].all()
        assert left != band[:, -1].all()  # black on exactly one side
        cols = np.arange(200)
        for row, w in zip(band, widths, strict=True):  # contiguous from that side
            expected = cols < w if left else cols >= 200 - w
            np.testing.assert_array_equal(row, expected)


def test_edge_nodata_blacks_out_a_band_and_takes_its_ice_out_of_the_label():
    from marsice_plugin.cnn.training_data import render_chunk, synthetic_chunks

    banded = 0
    for seed in range(3200, 3206, 2):  # chunks planted with ice
        dn0, ice0, sun0 = render_chunk(seed, 256, True)
        dn1, ice1, sun1 = render_chunk(seed, 256, True, edge_nodata=1.0)
        band = dn1 == 0
        assert band[:, 0].all() or band[:, -1].all()
        np.testing.assert_array_equal(dn1[~band], dn0[~band])  # the same scene outside the band
        np.testing.assert_array_equal(ice1, ice0 & ~band)  # no ice label under no-data
        assert sun1 == sun0
        banded += int(band.any())
    assert banded == 3
    never = [render_chunk(seed, 256, True, edge_nodata=0.0)[0] for seed in range(3200, 3203)]
    assert all((dn > 0).all() for dn in never)  # edge_nodata 0: the renderer's chunks, unchanged
    with pytest.raises(ValueError, match="between 0 and 1"):
        synthetic_chunks(2, seed=3200, size=256, input_size=64, workers=1, edge_nodata=1.5)


def test_hard_ice_gives_ice_chunks_small_faint_patches_and_leaves_the_rest_of_the_scene():
    from scipy import ndimage

    from marsice_plugin.cnn.training_data import (
        HARD_ICE_CONTRAST,
        HARD_ICE_RADIUS_M,
        chunk_config,
        synthetic_chunks,
    )
    from marsice_plugin.synthetic.scene import render

    for seed in range(3300, 3306, 2):  # chunks planted with ice
        plain, hard = render(chunk_config(seed, 256, True)), render(chunk_config(seed, 256, True, hard_ice=1.0))
        boulder_patches = [p for p in hard.ice_patches if p["kind"] == "boulder"]
        assert boulder_patches
        for p in boulder_patches:
            assert HARD_ICE_RADIUS_M[0] <= p["radius_m"] <= HARD_ICE_RADIUS_M[1]
            assert HARD_ICE_CONTRAST[0] <= p["contrast"] <= HARD_ICE_CONTRAST[1]
        assert len(hard.ice_patches) == len(plain.ice_patches)
        # same terrain, decoys and instrument: away from the ice the pixels are the plain scene's up to the
        # renderer's percentile stretch (a linear map of DN, which fainter ice moves a little, up to the clip
        # at DN 1021)
        away = ~ndimage.binary_dilation(plain.ice | hard.ice, iterations=12) & ~plain.hot
        away &= (plain.dn < 950) & (hard.dn < 950)
        gain, offset = np.polyfit(plain.dn[away].astype(float), hard.dn[away].astype(float), 1)
        residual = hard.dn[away] - (gain * plain.dn[away] + offset)
        assert np.abs(residual).max() <= 1.5  # the two scenes' DN rounding only
        np.testing.assert_array_equal(hard.hot, plain.hot)
    # chunks without ice, and hard_ice 0, are the renderer's chunks unchanged
    assert chunk_config(3301, 256, False, hard_ice=1.0) == chunk_config(3301, 256, False)
    assert chunk_config(3300, 256, True, hard_ice=0.0).ice_radius_m == (1.0, 6.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        synthetic_chunks(2, seed=3300, size=256, input_size=64, workers=1, hard_ice=-0.1)


def test_heldout_check_writes_its_figures_into_the_card_beside_the_model(tmp_path):
    import shutil

    from marsice_plugin.cnn.heldout import HELDOUT_SEED, main

    from .conftest import DEMO_MODEL

    model = tmp_path / "m.keras"
    shutil.copy(DEMO_MODEL, model)
    assert main([str(model), "4", "1.0"]) == 0
    card = json.loads((tmp_path / "m.card.json").read_text())
    result = card["heldout_evaluation_edge_nodata"]
    assert result["heldout"] == {
        "source": "marsice synthetic chunks",
        "first_seed": HELDOUT_SEED,
        "count": 4,
        "read_level": 0,
        "edge_nodata": 1.0,
    }
    assert result["model"]["n"] == 4 and result["model"]["positives"] <= 2  # half planted; a band may hide ice
    assert "heldout_evaluation" not in card  # the plain check keeps its own entry
