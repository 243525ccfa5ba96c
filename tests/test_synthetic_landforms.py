"""The renderer's optional terrain kinds and decoys: their relief, shadows and albedo, and that they stay off
unless asked for (old scenes and old training draws keep their pixels)."""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from marsice_plugin.synthetic import landforms
from marsice_plugin.synthetic.scene import SceneConfig, render

#: A bare scene: no boulders, craters or base polygons, sun at the band's median azimuth and incidence 70°.
BARE = {"n_boulders": 0, "n_craters": 0, "polygons": False, "sun_azimuth": 297.0, "incidence": 70.0}


def _digest(*arrays: np.ndarray) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


def _along(height: np.ndarray, azimuth_deg: float, scale_m: float) -> np.ndarray:
    """Slope of ``height`` along ``azimuth_deg`` (rise per metre moving that way)."""
    d_row, d_col = np.gradient(height.astype(np.float64), scale_m)
    az = math.radians(azimuth_deg)
    return d_row * -math.cos(az) + d_col * math.sin(az)


def test_default_scenes_and_training_chunks_render_byte_identically_to_before():
    # hashes computed from the renderer before the terrain kinds existed (HEAD b7a62b5)
    scene = render(SceneConfig(width=256, height=256, seed=3))
    layers = (scene.dn, scene.ice, scene.shadow, scene.dust, scene.hot)
    assert _digest(*layers) == "30430367b5502d36e86a1112bdaffbb8e262287a8d9631e52adb2e8b1e209cbc"
    stepped = render(SceneConfig(width=320, height=256, seed=11, scale_m=0.25, ccd_offsets=True, n_craters=2))
    layers = (stepped.dn, stepped.ice, stepped.shadow, stepped.dust, stepped.hot)
    assert _digest(*layers) == "1d80e6222440ccfb72e6644b4833d3d348e29a7c078fd1fee51ab10c3687f0ed"
    assert not scene.landforms and not scene.decoys

    from marsice_plugin.cnn.training_data import render_chunk

    expected = {
        4: "ddae1d41a0313bc24b4d061889b2800d0a0aac7e18cd9600740b4180477f6fd0",
        5: "9210e951faf468ea7c771d087e7b7c5612eae51ede6928a241da852c39fa9dc1",
    }
    for seed, digest in expected.items():
        dn, ice, _ = render_chunk(seed, 256, seed % 2 == 0, edge_nodata=0.5, hard_ice=0.5)
        assert _digest(dn, ice) == digest


@pytest.mark.parametrize("barchan", [False, True])
def test_dune_lee_faces_are_steeper_than_stoss_sides_along_the_wind(barchan):
    dunes = replace(landforms.draw_dunes(landforms.kind_rng(21, "dunes"), 117.0), barchan=barchan)
    layer = landforms.dune_relief(landforms.kind_rng(21, "dunes"), (512, 512), 0.5, dunes)
    assert 0.8 * dunes.height_m < layer.max() < 1.35 * dunes.height_m  # barchans vary by ± 30 % in size
    downwind = _along(layer, dunes.wind_azimuth, 0.5)
    lee = np.percentile(-downwind[downwind < -0.02], 90)  # faces that drop downwind
    stoss = np.percentile(downwind[downwind > 0.02], 90)  # sides that rise downwind (rippled)
    assert lee == pytest.approx(dunes.lee_slope, abs=0.1)  # the angle of repose, ~30°
    assert lee > 2.0 * stoss
    if not barchan:  # transverse ridges run across the wind: slopes along the crests are small
        across = _along(layer, dunes.wind_azimuth + 90.0, 0.5)
        assert np.percentile(np.abs(across), 50) < 0.5 * np.percentile(np.abs(downwind), 50)


def test_dune_shadows_fall_on_the_lee_faces_when_the_wind_blows_away_from_the_sun():
    shadowed = {}
    for wind in (117.0, 297.0):  # away from the sun at 297°, and toward it
        scene = render(SceneConfig(width=512, height=512, seed=21, dunes=True, dune_wind_azimuth=wind, **BARE))
        layer = scene.landforms["dune_layer"]
        downwind = _along(scene.height, wind, scene.config.scale_m)
        lee, stoss = (downwind < -0.25) & (layer > 0.5), (downwind > 0.05) & (layer > 0.5)
        assert lee.sum() > 5000 and stoss.sum() > 5000
        shadowed[wind] = (scene.shadow[lee].mean(), scene.shadow[stoss].mean())
    # wind away from the sun: slip faces (steeper than the sun's 20° elevation) face away from it, in shadow
    assert shadowed[117.0][0] > 0.7 and shadowed[117.0][1] < 0.02
    # wind toward the sun: the same faces look at the sun and are lit; gentle stoss sides are not steep enough
    assert shadowed[297.0][0] < 0.02 and shadowed[297.0][1] < 0.02
    # the lit scene's darkest pixels are the shadows, not painted: DN in shadow is below the lit lee faces'
    away = render(SceneConfig(width=512, height=512, seed=21, dunes=True, dune_wind_azimuth=117.0, **BARE))
    assert np.median(away.dn[away.shadow]) < 0.6 * np.median(away.dn[~away.shadow])


def test_gully_channels_are_lower_than_the_slope_beside_them():
    shape, scale = (512, 512), 0.5
    relief, gullies = landforms.gully_slope(landforms.kind_rng(4, "gullies"), shape, scale, 3)
    scene = render(SceneConfig(width=512, height=512, seed=4, n_gullies=3, **BARE))
    assert len(gullies) == 3 and len(scene.landforms["gullies"]) == 3
    for height in (relief, scene.height):
        for gully in gullies:
            az = math.radians(gully["facing"])
            side = np.array([-math.sin(az), -math.cos(az)])  # (row, col) across the slope
            offset = (gully["width_m"] / 2 + 3.0) / scale
            rows, cols = gully["rows"], gully["cols"]
            beside = []
            for sign in (-1, 1):
                r = np.clip(np.rint(rows + sign * offset * side[0]).astype(int), 0, shape[0] - 1)
                c = np.clip(np.rint(cols + sign * offset * side[1]).astype(int), 0, shape[1] - 1)
                beside.append(height[r, c])
            sunk = height[rows, cols] - 0.5 * (beside[0] + beside[1])
            assert np.median(sunk) < -0.5 * gully["depth_m"]
        # the channel runs downhill: its heights fall along the slope's facing
        u = rows * -math.cos(az) + cols * math.sin(az)
        assert np.corrcoef(u, relief[rows, cols])[0, 1] < -0.9


def test_layered_deposit_beds_alternate_in_albedo_and_are_horizontal():
    relief, beds, factor = landforms.layered_relief(
        landforms.kind_rng(2, "layered"), (512, 512), 0.5, landforms.draw_layers(landforms.kind_rng(2, "layered"))
    )
    present = [k for k in range(int(beds.max()) + 1) if (beds == k).sum() > 200]
    assert len(present) >= 4
    swing = [float(factor[beds == k].mean()) - 1.0 for k in present]
    assert all(a * b < 0 for a, b in itertools.pairwise(swing))  # bright, dark, bright, ...
    assert all(abs(a) > 0.04 for a in swing)
    mean_height = [float(relief[beds == k].mean()) for k in present]
    assert mean_height == sorted(mean_height)  # higher beds crop out higher: flat-lying layers

    # in a scene the beds scale the renderer's own albedo texture, nothing else of it (at 1 m/px: the base
    # albedo of small scenes at finer scales often sits at its clip, where the ratio would be 1)
    config = SceneConfig(width=256, height=256, seed=2, scale_m=1.0, **BARE)
    plain, layered = render(config), render(replace(config, layered=True))
    ratio = layered.albedo / plain.albedo
    bed = layered.landforms["beds"]
    for k in range(int(bed.max()) + 1):
        if (bed == k).sum() > 50:
            assert np.median(ratio[bed == k]) == pytest.approx(np.median(layered.landforms["albedo_factor"][bed == k]))
    np.testing.assert_allclose(ratio[bed < 0], 1.0)


@pytest.mark.parametrize("variation", [0.0, 0.5])
def test_small_polygons_have_the_asked_spacing_and_troughs_vary_when_asked(variation):
    config = SceneConfig(width=512, height=512, seed=8, scale_m=0.25, small_polygon_cell_m=(4.0, 6.0), **BARE)
    plain = render(config)
    small = render(replace(config, small_polygons=True, trough_variation=variation))
    assert 4.0 <= small.landforms["small_polygon_cell_m"] <= 6.0
    troughs = small.height - plain.height  # the same scene otherwise
    cells = troughs > -1e-4
    labels, count = ndimage.label(cells)
    edge = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))) - {0}
    spacing = math.sqrt(cells.size * 0.25**2 / (count - 0.5 * len(edge)))  # cells cut by the border count half
    assert 4.0 <= spacing <= 6.0
    # the deepest point of each polygon's rim: one depth for every trough, or spread when varied
    rim = ndimage.grey_dilation(labels, size=9) * ~cells
    floors = np.array(ndimage.minimum(troughs, rim, index=np.arange(1, count + 1)))
    spread = np.std(floors) / abs(np.mean(floors))
    assert spread > 0.1 if variation else spread < 0.05


def test_sun_side_decoys_are_bright_sunlit_and_leave_the_ice_alone():
    config = SceneConfig(width=512, height=512, seed=21, dunes=True, n_boulders=300, n_ice_boulder=4, sun_azimuth=297.0)
    plain = render(config)
    decoyed = render(replace(config, n_slope_dust=3, n_frost=3, n_outcrops=2))
    frost, dust, rock = (decoyed.decoys[k] for k in ("frost", "slope_dust", "outcrops"))
    assert frost.sum() > 200 and dust.sum() > 100 and rock.sum() > 100
    from marsice_plugin.synthetic import illumination

    direct = illumination.lambert(plain.height, 0.5, 297.0, config.incidence)
    assert np.median(direct[frost]) > np.percentile(direct, 75)  # on slopes that face the sun
    assert np.median(direct[dust]) > np.percentile(direct, 75)
    layer = decoyed.landforms["dune_layer"]
    assert np.median(layer[dust]) > np.median(layer[layer > 0.1])  # on the upper dune slopes and crests
    assert dust[decoyed.dust].sum() == dust.sum()  # counted with the renderer's dust decoys
    # brighter than the same pixels without them, on the renderer's DN scale (stretch undone)
    iof_plain = plain.dn * plain.scaling_factor + plain.offset
    iof_decoyed = decoyed.dn * decoyed.scaling_factor + decoyed.offset
    assert np.median(iof_decoyed[frost] / iof_plain[frost]) > 1.3
    # outcrops are relief that casts shadows, and bright
    raised = (decoyed.height - plain.height)[rock]
    assert raised.min() > 0.05 and np.median(raised) > 0.3
    assert (decoyed.shadow & ~plain.shadow).sum() > 20
    assert np.median(decoyed.albedo[rock] / plain.albedo[rock]) > 1.2
    np.testing.assert_array_equal(decoyed.ice, plain.ice)  # not ice, and the ice is where it was


def test_low_contrast_scenes_fill_a_narrow_band_of_dns():
    config = SceneConfig(width=256, height=256, seed=3, n_boulders=200)
    plain, hazy = render(config), render(replace(config, low_contrast=0.7))
    valid = ~plain.nodata & ~plain.hot
    spread = np.percentile(plain.dn[valid], 99) - np.percentile(plain.dn[valid], 1)
    hazy_spread = np.percentile(hazy.dn[valid], 99) - np.percentile(hazy.dn[valid], 1)
    assert hazy_spread < 0.6 * spread
    assert 300 < np.median(hazy.dn[valid]) < 600  # still mid-range, not dark
    # relative contrast of the radiance itself drops too, not only the DN stretch
    iof, hazy_iof = (s.dn[valid] * s.scaling_factor + s.offset for s in (plain, hazy))
    assert np.std(hazy_iof) / np.mean(hazy_iof) < 0.8 * np.std(iof) / np.mean(iof)
    np.testing.assert_array_equal(hazy.ice, plain.ice)


#: SceneConfig fields of the terrain kinds and decoys, all off.
KINDS_OFF = {
    "centred_relief": False,  # terrain-kind draws also centre the relief (SceneConfig.centred_relief)
    "dunes": False,
    "layered": False,
    "n_gullies": 0,
    "small_polygons": False,
    "trough_variation": 0.0,
    "n_outcrops": 0,
    "n_slope_dust": 0,
    "n_frost": 0,
    "low_contrast": 0.0,
}


def _taken(config: SceneConfig) -> dict[str, bool]:
    return {
        "dunes": config.dunes,
        "layered": config.layered,
        "gullies": config.n_gullies > 0,
        "small_polygons": config.small_polygons,
        "trough_variation": config.trough_variation > 0,
        "outcrops": config.n_outcrops > 0,
        "slope_dust": config.n_slope_dust > 0,
        "frost": config.n_frost > 0,
        "low_contrast": config.low_contrast > 0,
    }


def test_training_draws_take_the_terrain_kinds_at_their_stated_rates_whatever_the_label():
    from marsice_plugin.cnn.training_data import TERRAIN_KIND_RATES, chunk_config, render_chunk, synthetic_chunks

    taken = {label: [] for label in (True, False)}
    for seed in range(5000, 7000):
        old = chunk_config(seed, 256, seed % 2 == 0)
        new = chunk_config(seed, 256, seed % 2 == 0, terrain_kinds=True)
        assert replace(new, **KINDS_OFF) == old  # the base scene is the old draw's
        assert not any(_taken(old).values())
        taken[seed % 2 == 0].append(_taken(new))
    assert set(TERRAIN_KIND_RATES) == set(taken[True][0])
    for kind, rate in TERRAIN_KIND_RATES.items():
        for label, draws in taken.items():  # at the stated rate in ice and ice-free chunks alike
            share = np.mean([t[kind] for t in draws])
            assert abs(share - rate) < 4 * math.sqrt(rate * (1 - rate) / len(draws)), (kind, label, share)

    # a drawn chunk renders its kinds; the same seed without them is the old chunk
    seed = next(s for s in range(5000, 7000, 2) if _taken(chunk_config(s, 256, True, terrain_kinds=True))["dunes"])
    scene = render(chunk_config(seed, 256, True, terrain_kinds=True))
    assert scene.landforms["dune_layer"].max() > 1.0
    with_kinds, _, _ = render_chunk(seed, 256, True, terrain_kinds=True)
    without, _, _ = render_chunk(seed, 256, True)
    np.testing.assert_array_equal(without, render(chunk_config(seed, 256, True)).dn)
    assert not np.array_equal(with_kinds, without)
    x, y, _ = synthetic_chunks(2, seed=seed, size=256, input_size=64, workers=1, terrain_kinds=True)
    assert x.shape == (2, 64, 64, 1) and set(y) <= {0.0, 1.0}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"low_contrast": 1.5}, "low_contrast is a fraction from 0 to 1"),
        ({"trough_variation": 1.0}, "trough_variation is from 0 to below 1"),
        ({"small_polygon_cell_m": (6.0, 3.0)}, "small_polygon_cell_m is"),
        ({"n_frost": -1}, "counts cannot be negative"),
    ],
)
def test_out_of_range_terrain_kind_settings_are_refused_before_rendering(setting, message):
    with pytest.raises(ValueError, match=message):
        SceneConfig(width=64, height=64, **setting)


def test_train_terrain_kinds_switch_draws_them_and_records_their_rates() -> None:
    """`train --synthetic N --terrain-kinds` trains on the kinds' draws, and its card data names their rates."""
    import argparse

    from marsice_plugin.cli import build_parser
    from marsice_plugin.cnn.training_data import TERRAIN_KIND_RATES, synthetic_chunks
    from marsice_plugin.commands.train import generated_and_real
    from marsice_plugin.progress import Reporter

    args = build_parser().parse_args(
        ["train", "--synthetic", "2", "--data-seed", "4", "--input-size", "64", "--terrain-kinds", "-o", "m.keras"]
    )
    assert isinstance(args, argparse.Namespace) and args.terrain_kinds
    x, y, sun, data = generated_and_real(args, Reporter("quiet"))
    assert data["terrain_kinds"] == TERRAIN_KIND_RATES
    ex, ey, esun = synthetic_chunks(2, seed=4, input_size=64, terrain_kinds=True)
    order = np.lexsort((sun, y))  # one shuffle of the sources: compare as sets of (label, sun, pixels)
    eorder = np.lexsort((esun, ey))
    np.testing.assert_array_equal(x[order], ex[eorder])
    off = build_parser().parse_args(["train", "--synthetic", "2", "--input-size", "64", "-o", "m.keras"])
    assert off.terrain_kinds is False


def test_centred_relief_keeps_the_albedo_texture_the_old_renderer_clipped_flat() -> None:
    """A 1024 px chunk at 0.25 m is ~2.5 correlation lengths wide: the old relief's blown-up mean pinned the albedo
    at its clip limits (seeds 2 and 7: 90 % and 100 % of pixels); centred, no pixel is pinned and new training draws
    are centred while old configs keep their pixels."""
    from marsice_plugin.cnn.training_data import chunk_config, draw_terrain_kinds
    from marsice_plugin.synthetic import terrain

    def pinned(seed: int, centred: bool) -> float:
        field = terrain.low_frequency_relief(np.random.default_rng(seed), (1024, 1024), 0.25, 1.0, centred=centred)
        albedo = np.clip(0.2 * (1.0 + 0.12 * field), 0.05, 0.5)
        return float(((albedo <= 0.05) | (albedo >= 0.5)).mean())

    assert pinned(2, False) > 0.8 and pinned(7, False) > 0.8
    assert max(pinned(seed, True) for seed in range(8)) == 0.0
    field = terrain.low_frequency_relief(np.random.default_rng(7), (1024, 1024), 0.25, 1.0, centred=True)
    assert abs(float(field.mean())) < 0.3 and float(field.std()) == pytest.approx(1.0, rel=0.05)
    scene = render(SceneConfig(width=256, height=256, scale_m=0.25, seed=7, centred_relief=True))
    inside = scene.albedo[~scene.nodata]
    assert float(((inside <= 0.05) | (inside >= 0.5)).mean()) < 0.01
    assert draw_terrain_kinds(chunk_config(7, 256, True), 7).centred_relief
    assert not chunk_config(7, 256, True).centred_relief and not SceneConfig().centred_relief
