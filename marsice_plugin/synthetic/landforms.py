"""Terrain kinds of real southern mid-latitude HiRISE images beyond the base relief: dunes, layered deposits,
gullies, small polygons with varied troughs, and raised bedrock outcrops.

Every kind is relief (metres added to the height field), so it is lit and shadowed by the same Lambert
shading and ray-marched cast shadows as the rest of the scene: a detector cannot tell a kind by painted
pixels, only by shapes that real images show too. Albedo stays the renderer's albedo model; only layered
deposits and outcrops scale it, as real layers and bedrock differ in brightness.

Each kind draws from its own random stream (``(seed, 7, k)``, :func:`kind_rng`), so turning one on adds that
landform to the scene the renderer would draw without it instead of reshuffling the rest. Grid convention as in
:mod:`.terrain`: rows run southward, columns eastward; azimuths are degrees clockwise from north.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import terrain

if TYPE_CHECKING:
    from .scene import SceneConfig

#: Stream numbers of the kinds (the third element of the seed tuple); never reuse one for another kind.
STREAMS = {"dunes": 1, "layered": 2, "gullies": 3, "small_polygons": 4, "troughs": 5, "outcrops": 6, "decoys": 7}


def kind_rng(seed: int, kind: str) -> np.random.Generator:
    """The random stream of one terrain kind, independent of the scene's main stream and of other kinds."""
    return np.random.default_rng((seed, 7, STREAMS[kind]))


def along_across(shape: tuple[int, int], azimuth_deg: float, scale_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Metres along ``azimuth_deg`` (u) and to its right (v) of every pixel, from the grid's origin."""
    az = math.radians(azimuth_deg)
    d_row, d_col = -math.cos(az), math.sin(az)
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    u = (rr * d_row + cc * d_col) * scale_m
    v = (-rr * d_col + cc * d_row) * scale_m
    return u, v


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _envelope(rng: np.random.Generator, shape: tuple[int, int], scale_m: float, cover: float) -> np.ndarray:
    """0..1 field covering about ``cover`` of the scene in smooth blobs (~100 m), with soft borders."""
    field = terrain.low_frequency_relief(rng, shape, scale_m, amplitude_m=1.0)
    cut = float(np.quantile(field, 1.0 - cover)) if cover < 1.0 else float(field.min()) - 1.0
    return _smoothstep((field - cut) / 0.6 + 0.5).astype(np.float32)


@dataclass(frozen=True)
class Dunes:
    """A dune field: wind direction (toward which sand moves), crest spacing, height and slip-face slope."""

    wind_azimuth: float
    wavelength_m: float
    height_m: float
    lee_slope: float
    barchan: bool
    ripple_m: float
    ripple_amplitude_m: float


def draw_dunes(rng: np.random.Generator, wind_azimuth: float | None = None) -> Dunes:
    """Transverse ridges (2/3) or barchans 2-8 m high; lee at the angle of repose (~30°), stoss 4-5× gentler."""
    wind = float(rng.uniform(0.0, 360.0))  # drawn even when given, so the other draws stay the same
    height = float(rng.uniform(2.0, 8.0))
    lee = float(rng.uniform(0.55, 0.65))
    wavelength = float(rng.uniform(4.5, 7.0)) * height / lee  # stoss length 3.5-6 times the lee face's
    return Dunes(
        wind_azimuth=wind if wind_azimuth is None else wind_azimuth,
        wavelength_m=wavelength,
        height_m=height,
        lee_slope=lee,
        barchan=bool(rng.random() < 1.0 / 3.0),
        ripple_m=float(rng.uniform(2.0, 5.0)),
        ripple_amplitude_m=float(rng.uniform(0.02, 0.06)),
    )


def dune_relief(rng: np.random.Generator, shape: tuple[int, int], scale_m: float, dunes: Dunes) -> np.ndarray:
    """Heights (m) of a dune field: gentle rippled stoss sides and steep unrippled lee faces downwind of crests.

    Slip faces avalanche, which erases ripples on them; the stoss keeps ripples roughly across the wind.
    """
    from scipy import ndimage

    u, v = along_across(shape, dunes.wind_azimuth, scale_m)
    lee_len = dunes.height_m / dunes.lee_slope
    if dunes.barchan:
        layer, stoss = _barchans(rng, u, v, dunes, lee_len)
    else:
        stoss_frac = 1.0 - lee_len / dunes.wavelength_m
        bend = float(rng.uniform(0.05, 0.2)) * dunes.wavelength_m  # sinuous crest lines
        wander = float(rng.uniform(2.0, 5.0)) * dunes.wavelength_m
        phase0 = float(rng.uniform(0, 2 * math.pi))
        p = np.mod((u + bend * np.sin(2 * math.pi * v / wander + phase0)) / dunes.wavelength_m, 1.0)
        stoss = p < stoss_frac
        layer = dunes.height_m * np.where(stoss, p / stoss_frac, (1.0 - p) / (1.0 - stoss_frac))
        layer *= _envelope(rng, shape, scale_m, float(rng.uniform(0.5, 1.0)))
    layer = ndimage.gaussian_filter(layer.astype(np.float32), max(0.5, 0.4 / scale_m))  # rounded brinks
    turn = math.radians(float(rng.uniform(-15, 15)))
    ripple_u = u * math.cos(turn) + v * math.sin(turn)
    ripples = dunes.ripple_amplitude_m * np.sin(2 * math.pi * ripple_u / dunes.ripple_m + float(rng.uniform(0, 6.3)))
    cover = np.clip(layer / (0.3 * dunes.height_m), 0.0, 1.0)
    layer += (ripples * cover * ndimage.uniform_filter(stoss.astype(np.float32), 3)).astype(np.float32)
    return layer.astype(np.float32)


def _barchans(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, dunes: Dunes, lee_len: float
) -> tuple[np.ndarray, np.ndarray]:
    """Crescent dunes: a stoss rising to a crest that curves downwind into horns, a slip face beyond it."""
    layer = np.zeros(u.shape, np.float32)
    stoss = np.zeros(u.shape, bool)
    rows, cols = u.shape
    scale_m = float(np.hypot(u[0, 1] - u[0, 0], v[0, 1] - v[0, 0]))
    width = 1.6 * dunes.wavelength_m  # horn to horn
    count = max(1, int(rows * cols * scale_m**2 / (2.5 * width) ** 2))
    for _ in range(count):
        row, col = int(rng.integers(0, rows)), int(rng.integers(0, cols))
        w = width * float(rng.uniform(0.7, 1.3))
        reach = int((dunes.wavelength_m + 0.35 * w + w / 2) / scale_m) + 2
        win = (slice(max(0, row - reach), row + reach + 1), slice(max(0, col - reach), col + reach + 1))
        uu, vv = u[win], v[win]
        h = dunes.height_m * w / width
        x = (vv - v[row, col]) / (w / 2)
        body = np.sqrt(np.clip(1.0 - x**2, 0.0, None))
        crest = u[row, col] + 0.35 * w * x**2  # horns trail downwind
        local_h = h * body
        stoss_len = (dunes.wavelength_m - lee_len) * body
        up = local_h * np.clip(1.0 + (uu - crest) / np.maximum(stoss_len, 1e-3), 0.0, 1.0)
        down = np.clip(local_h - dunes.lee_slope * (uu - crest), 0.0, None)
        dune = (np.where(uu <= crest, up, down) * (body > 0)).astype(np.float32)
        stoss[win] |= (uu <= crest) & (dune > layer[win])
        np.maximum(layer[win], dune, out=layer[win])
    return layer, stoss


@dataclass(frozen=True)
class Layers:
    """A layered deposit: total thickness, bed thickness, share of each bed that is a steep riser, albedo swing."""

    thickness_m: float
    bed_m: float
    riser: float
    albedo_swing: float


def draw_layers(rng: np.random.Generator) -> Layers:
    """Deposits 8-25 m thick of 1.5-4 m beds, resistant risers 30-50 % of a bed, albedo ± 8-25 %."""
    return Layers(
        thickness_m=float(rng.uniform(8.0, 25.0)),
        bed_m=float(rng.uniform(1.5, 4.0)),
        riser=float(rng.uniform(0.3, 0.5)),
        albedo_swing=float(rng.uniform(0.08, 0.25)),
    )


def layered_relief(
    rng: np.random.Generator, shape: tuple[int, int], scale_m: float, layers: Layers
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heights of a terraced mound, the bed index of each pixel (-1 outside) and the albedo factor per pixel.

    The mound's smooth rise is cut into beds of equal thickness; each bed is a flat tread and a steep riser.
    Beds are horizontal, so a bed crops out along a contour, and alternate beds are brighter and darker.
    """
    field = terrain.low_frequency_relief(rng, shape, scale_m, amplitude_m=1.0)
    lo, hi = (float(q) for q in np.quantile(field, [rng.uniform(0.2, 0.5), rng.uniform(0.85, 0.98)]))
    rise = layers.thickness_m * np.clip((field - lo) / max(hi - lo, 1e-3), 0.0, 1.0)
    bed = np.floor(rise / layers.bed_m)
    within = rise / layers.bed_m - bed
    step = _smoothstep((within - (1.0 - layers.riser)) / layers.riser)
    relief = (layers.bed_m * (bed + step)).astype(np.float32)
    bed = np.where(rise > 0, bed, -1).astype(np.int32)
    texture = 1.0 + 0.3 * rng.uniform(-1, 1, int(bed.max()) + 2)  # beds differ; their order alternates
    sign = np.where(bed % 2 == 0, 1.0, -1.0)
    factor = np.where(bed >= 0, 1.0 + sign * layers.albedo_swing * texture[np.maximum(bed, 0)], 1.0)
    return relief, bed, factor.astype(np.float32)


def gully_slope(
    rng: np.random.Generator, shape: tuple[int, int], scale_m: float, count: int, hemisphere: str = "south"
) -> tuple[np.ndarray, list[dict]]:
    """A slope facing roughly poleward (where mid-latitude gullies are most common) with ``count`` gullies.

    Each gully is an alcove cut into the upper slope, a sinuous channel down the slope and a fan-shaped
    apron at its foot. Returns the heights to add and each gully's channel centreline (rows, cols) and width.
    """
    rows, cols = shape
    facing = (180.0 if hemisphere == "south" else 0.0) + float(rng.uniform(-90, 90))  # downslope azimuth
    u, v = along_across(shape, facing, scale_m)
    extent = min(rows, cols) * scale_m
    drop = float(rng.uniform(8.0, 25.0)) * min(1.0, extent / 200.0)
    run = drop / float(rng.uniform(0.15, 0.3))  # mean slope 9-17°, steepest mid-slope 1.5 times that
    top = float(u.mean()) - 0.5 * run + float(rng.uniform(-0.1, 0.1)) * extent
    heights = (drop * (1.0 - _smoothstep((u - top) / run))).astype(np.float32)
    gullies = []
    v_lo, v_hi = float(np.quantile(v, 0.2)), float(np.quantile(v, 0.8))
    centres = np.sort(rng.uniform(v_lo, v_hi, count))
    for vg in centres:
        width = float(rng.uniform(2.0, 5.0))
        depth = float(rng.uniform(0.6, 1.5))
        bend, wave = float(rng.uniform(0.5, 3.0)), float(rng.uniform(20, 60))
        phase = float(rng.uniform(0, 2 * math.pi))
        centre = vg + bend * np.sin(2 * math.pi * (u - top) / wave + phase)
        lateral = np.abs(v - centre)
        along = (u - top) / run  # 0 at the top of the slope, 1 at its foot
        channel = depth * np.clip(1.0 - (2.0 * lateral / width) ** 2, 0.0, None) * ((along > 0.15) & (along < 1.0))
        alcove_w, alcove_d = float(rng.uniform(3.0, 6.0)) * width, float(rng.uniform(1.0, 2.5))
        r_alcove = np.hypot((along - 0.15) / 0.2, lateral / (alcove_w / 2))
        alcove = alcove_d * np.clip(1.0 - r_alcove**2, 0.0, None)
        foot_v = vg + bend * math.sin(2 * math.pi * run / wave + phase)
        r_fan = np.hypot(u - (top + run), v - foot_v)
        spread = np.abs(np.arctan2(v - foot_v, u - (top + run)))
        fan_r, fan_h = float(rng.uniform(10.0, 25.0)), 0.5 * depth
        apron = fan_h * np.clip(1.0 - r_fan / fan_r, 0.0, None) * _smoothstep((0.7 - spread) / 0.3)
        heights -= np.maximum(channel, alcove).astype(np.float32)
        heights += apron.astype(np.float32)
        mid = (along > 0.35) & (along < 0.85) & (lateral < 0.5)
        line_rows, line_cols = np.nonzero(mid)
        gullies.append({"rows": line_rows, "cols": line_cols, "width_m": width, "depth_m": depth, "facing": facing})
    return heights, gullies


def outcrops(
    rng: np.random.Generator, shape: tuple[int, int], scale_m: float, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Raised bright bedrock: flat-topped blocks 4-15 m across and 0.5-2 m high; heights and albedo factor."""
    heights = np.zeros(shape, np.float32)
    factor = np.ones(shape, np.float32)
    rows, cols = shape
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float32)
    for _ in range(count):
        row, col = float(rng.uniform(0, rows)), float(rng.uniform(0, cols))
        radius = float(rng.uniform(2.0, 7.5)) / scale_m
        aspect, angle = float(rng.uniform(1.0, 3.0)), float(rng.uniform(0, math.pi))
        dr, dc = rr - row, cc - col
        a, b = (dc * math.cos(angle) + dr * math.sin(angle)) / aspect, -dc * math.sin(angle) + dr * math.cos(angle)
        top = _smoothstep((1.0 - np.hypot(a, b) / radius) / 0.25)
        np.maximum(heights, float(rng.uniform(0.5, 2.0)) * top, out=heights)
        np.maximum(factor, 1.0 + float(rng.uniform(0.3, 0.8)) * top, out=factor)
    return heights, factor


def add_kinds(config: SceneConfig, height: np.ndarray) -> dict:
    """Add the terrain kinds ``config`` turns on to ``height`` (in place); return what the rest of the render needs.

    Keys: ``albedo_factor`` (per-pixel albedo scale of beds and outcrops), ``beds`` (bed index, -1 outside the
    deposit), ``dunes`` and ``dune_layer``, ``gullies`` (channel centrelines), ``small_polygon_cell_m`` and
    ``outcrops`` (mask); only those of kinds that are on.
    """
    from scipy import ndimage

    shape, s, seed = height.shape, config.scale_m, config.seed
    out: dict = {}
    factor = np.ones(shape, np.float32)
    if config.dunes:
        rng = kind_rng(seed, "dunes")
        out["dunes"] = draw_dunes(rng, config.dune_wind_azimuth)
        out["dune_layer"] = dune_relief(rng, shape, s, out["dunes"])
        # sand buries the small relief under it: troughs and pits fill up to a smoothed ground
        ground = ndimage.gaussian_filter(height, max(2.0, 4.0 / s))
        np.maximum(height, ground + out["dune_layer"], out=height)
    if config.layered:
        rng = kind_rng(seed, "layered")
        relief, out["beds"], bed_factor = layered_relief(rng, shape, s, draw_layers(rng))
        height += relief
        factor *= bed_factor
    if config.n_gullies > 0:
        relief, out["gullies"] = gully_slope(kind_rng(seed, "gullies"), shape, s, config.n_gullies, config.hemisphere)
        height += relief
    if config.small_polygons:
        rng = kind_rng(seed, "small_polygons")
        cell = float(rng.uniform(*config.small_polygon_cell_m))
        depth, half_width = float(rng.uniform(0.1, 0.4)), min(float(rng.uniform(0.3, 0.7)), 0.2 * cell)
        terrain.add_polygon_troughs(
            height, rng, s, cell_m=cell, depth_m=depth, half_width_m=half_width, variation=config.trough_variation
        )
        out["small_polygon_cell_m"] = cell
    if config.n_outcrops > 0:
        relief, rock = outcrops(kind_rng(seed, "outcrops"), shape, s, config.n_outcrops)
        height += relief
        factor *= rock
        out["outcrops"] = rock > 1.15
    if config.layered or config.n_outcrops > 0:
        out["albedo_factor"] = factor
    return out


def sun_side_decoys(
    config: SceneConfig, direct: np.ndarray, dune_layer: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Bright dust on sun-facing slopes (dune crests when there are dunes) and CO2-frost-like bright patches.

    Both are centred where the sun shines most squarely (the top tenth of the direct-light factor) and fade
    out on slopes lit less than the median, so they lie on the side of relief opposite to where remnant ice
    survives, so they are bright, sunlit and not ice. Returns the dust
    opacity (added to the renderer's dust layer) and the frost brightness boost.
    """
    from scipy import ndimage

    from .scene import _soft_disc

    rng = kind_rng(config.seed, "decoys")
    shape, s = direct.shape, config.scale_m
    dust = np.zeros(shape, np.float32)
    frost = np.zeros(shape, np.float32)
    median, top = (float(q) for q in np.quantile(direct, [0.5, 0.9]))
    sunny = direct >= top
    facing = np.clip((direct - median) / max(top - median, 1e-6), 0.0, 1.0)  # thins out off the sunlit slopes
    crest = sunny
    if dune_layer is not None:
        crest = sunny & (dune_layer > 0.6 * float(dune_layer.max()))
        if not crest.any():
            crest = sunny
    for count, where, boost in ((config.n_slope_dust, crest, dust), (config.n_frost, sunny, frost)):
        rows, cols = np.nonzero(where)
        for _ in range(count if len(rows) else 0):
            k = int(rng.integers(len(rows)))
            frosty = boost is frost
            radius_m = float(rng.uniform(3.0, 12.0) if frosty else rng.uniform(2.0, 8.0))
            aspect = float(rng.uniform(1.0, 1.6) if frosty else rng.uniform(1.5, 3.0))
            win, op = _soft_disc(shape, rows[k], cols[k], radius_m / s, max(1.0, 0.8 / s), aspect, rng.uniform(0, 3.2))
            strength = float(rng.uniform(0.5, 1.5) if frosty else rng.uniform(0.4, 1.2))
            if frosty:  # frost lies in patches: a smooth mottle thins it
                mottle = ndimage.gaussian_filter(rng.standard_normal(op.shape).astype(np.float32), 1.0 / s)
                op = op * np.clip(0.6 + 0.4 * mottle / max(float(mottle.std()), 1e-6), 0.0, 1.0)
            np.maximum(boost[win], op * facing[win] * strength, out=boost[win])
    return dust, frost


def haze(iof: np.ndarray, amount: float) -> np.ndarray:
    """A dusty atmosphere: less direct contrast plus an even path radiance, so relief and patches look faint."""
    return ((1.0 - 0.5 * amount) * iof + amount * 0.8 * float(np.median(iof))).astype(np.float32)
