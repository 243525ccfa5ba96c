"""Render a HiRISE-like scene with known truth: terrain, sun, ice patches, decoys, instrument effects.

Physics, in order:

1. Height field: rolling relief + small craters with rims + polygonal troughs + boulder fields.
2. Albedo: dusty soil (~0.2) with low-frequency variation and fine texture.
3. Ice: flat bright patches (albedo × (1 + contrast)) with diffuse edges, on the *poleward* side of
   boulders and on the poleward-facing inner walls of craters, i.e. in and beside their shade.
   Being flat, ice casts no shadow. Contrast is drawn down to barely visible.
4. Decoys (labelled not-ice): bright dust on sun-facing slopes, dark sublimation spots, isolated
   hot pixels at special values (1022/1023) and at ordinary high DNs.

Optional terrain kinds and decoys (:mod:`.landforms`, each off by default so the frozen evaluation sets
re-render to the same pixels): dune fields, layered deposits, gullies, small polygons with varied troughs,
bright bedrock outcrops (all relief, lit and shadowed like the rest), bright dust on sun-facing dune crests,
CO2-frost-like bright patches on sunlit slopes, and low-contrast (hazy) scenes.
5. Radiance factor I/F = albedo × (direct × cos(i_local) × lit + ambient), where ``lit`` comes from
   ray-marched cast shadows and ``ambient`` is diffuse skylight (Mars shadows are not black).
6. Instrument: shot + read noise, conversion to 10-bit DN with the product's own SCALING_FACTOR and
   OFFSET (I/F = DN × SCALING_FACTOR + OFFSET, as in real labels), valid DNs kept in 3..1021, and
   the black (DN 0) margins of a map-projected strip that is not aligned with the map grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import illumination, landforms, terrain


@dataclass(frozen=True)
class SceneConfig:
    """Everything that defines a scene; with ``seed`` it reproduces the scene exactly."""

    width: int = 2048
    height: int = 2048
    scale_m: float = 0.5
    sun_azimuth: float = 297.0  # degrees clockwise from north, toward the sun
    incidence: float = 70.0
    hemisphere: str = "south"
    seed: int = 0
    n_craters: int = 4
    n_boulders: int = 600
    polygons: bool = True
    n_ice_boulder: int = 6
    n_ice_crater: int = 1
    ice_contrast: tuple[float, float] = (0.4, 1.5)
    #: radius range (metres) of the patches poleward of boulders; one draw per patch whatever the range,
    #: so a narrower range changes those patches' sizes and nothing else of the scene
    ice_radius_m: tuple[float, float] = (1.0, 6.0)
    n_dust: int = 2
    n_dark_spots: int = 2
    n_hot_special: int = 12
    n_hot_ordinary: int = 12
    nodata_margin: float = 0.08  # fraction of the width blacked out at the strip's skewed edges
    noise: bool = True
    #: extra patches at exact places: (row, col, radius in metres, contrast), e.g. across a chunk border;
    #: a fifth value > 0 also places a boulder of that radius (metres) on the patch's equatorward side,
    #: so the patch lies poleward of a shadowing landform as the paper's ice does
    ice_at: tuple[tuple[float, ...], ...] = ()
    #: per-CCD gain/offset steps and noisier seams (10 RED CCDs of 2048 unbinned px across the swath).
    #: Off by default so evaluation_set_v1 (frozen with this renderer) keeps its pixels; training sets
    #: and later evaluation sets turn it on.
    ccd_offsets: bool = False
    # Terrain kinds and decoys of real southern mid-latitude images (module docstring); all off by default.
    dunes: bool = False
    #: azimuth (degrees from north) toward which dune sand moves; None draws it
    dune_wind_azimuth: float | None = None
    layered: bool = False
    n_gullies: int = 0
    #: a second polygon network of small cells (size range in metres) over the base relief
    small_polygons: bool = False
    small_polygon_cell_m: tuple[float, float] = (3.0, 8.0)
    #: troughs' width and depth vary from edge to edge by up to this fraction (both polygon networks)
    trough_variation: float = 0.0
    n_outcrops: int = 0
    #: bright dust patches on sun-facing slopes (on dune crests when there are dunes)
    n_slope_dust: int = 0
    #: CO2-frost-like bright patches on sunlit slopes
    n_frost: int = 0
    #: 0..1: haze that flattens the scene's contrast and a narrower DN range
    low_contrast: float = 0.0
    #: rolling relief and the albedo's low-frequency field drawn with zero mean. Off (the renderer as the frozen
    #: sets and shipped models saw it): on scenes a few times smaller than the ~100 m correlation length (a 1024 px
    #: chunk at 0.25 m) the field is nearly constant, scaling it to its spread blows that constant up, and the
    #: albedo is pinned at its clip limits over much of the scene, with no texture left (terrain.low_frequency_relief)
    centred_relief: bool = False

    def __post_init__(self) -> None:
        """Refuse terrain-kind settings that would render nonsense (troughs of negative width, negative haze)."""
        lo, hi = self.small_polygon_cell_m
        checks = (
            (0.0 <= self.low_contrast <= 1.0, f"low_contrast is a fraction from 0 to 1, not {self.low_contrast}"),
            (0.0 <= self.trough_variation < 1.0, f"trough_variation is from 0 to below 1, not {self.trough_variation}"),
            (0.0 < lo <= hi, f"small_polygon_cell_m is (smallest, largest) metres above 0, not {(lo, hi)}"),
            (min(self.n_gullies, self.n_outcrops, self.n_slope_dust, self.n_frost) >= 0, "counts cannot be negative"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class Scene:
    """A rendered scene: DNs and every truth layer (all on the same north-up grid)."""

    config: SceneConfig
    dn: np.ndarray  # uint16, 10-bit values, 0 = no-data
    height: np.ndarray  # metres
    ice: np.ndarray  # bool truth: ice pixels (opacity > 0.5)
    shadow: np.ndarray  # bool: cast shadow
    hot: np.ndarray  # bool: planted hot pixels
    dust: np.ndarray  # bool: bright dust decoys
    nodata: np.ndarray  # bool
    scaling_factor: float
    offset: float
    ice_patches: list[dict] = field(default_factory=list)
    albedo: np.ndarray | None = None  # ground albedo before ice and decoy brightening
    #: what the optional terrain kinds drew (landforms.add_kinds): beds, dune_layer, gullies, ...
    landforms: dict = field(default_factory=dict)
    #: masks of the optional decoys: "frost", "slope_dust", "outcrops"
    decoys: dict = field(default_factory=dict)


def _poleward_sign(hemisphere: str) -> int:
    """+1 when the pole is toward increasing rows (south), -1 for the north."""
    return 1 if hemisphere == "south" else -1


def _soft_disc(
    shape: tuple[int, int], row: float, col: float, radius_px: float, edge_px: float, aspect: float, angle: float
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Opacity (0..1) of an elliptical patch with a diffuse edge, returned with its bounding slices.

    A patch wholly outside the image (a crater-wall patch of a crater near the edge) gets empty slices.
    """
    reach = radius_px * max(aspect, 1.0) + 3 * edge_px + 2
    r0, r1 = int(max(0, row - reach)), int(min(shape[0], row + reach + 1))
    c0, c1 = int(max(0, col - reach)), int(min(shape[1], col + reach + 1))
    r1, c1 = max(r0, r1), max(c0, c1)
    rr, cc = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    dr, dc = rr - row, cc - col
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = (dc * ca + dr * sa) / aspect, (-dc * sa + dr * ca)
    dist = np.hypot(u, v) - radius_px
    opacity = 1.0 / (1.0 + np.exp(dist / max(edge_px, 1e-3) * 1.7))
    return (slice(r0, r1), slice(c0, c1)), opacity.astype(np.float32)


def render(config: SceneConfig) -> Scene:
    """Render a scene from its configuration (deterministic for a given seed)."""
    rng = np.random.default_rng(config.seed)
    shape = (config.height, config.width)
    s = config.scale_m
    pole = _poleward_sign(config.hemisphere)

    # 1. terrain
    height = terrain.low_frequency_relief(rng, shape, s, amplitude_m=4.0, centred=config.centred_relief)
    craters = terrain.random_craters(rng, shape, s, config.n_craters)
    terrain.add_craters(height, craters, s)
    if config.polygons:
        terrain.add_polygon_troughs(
            height,
            rng,
            s,
            cell_m=float(rng.uniform(10, 25)),
            depth_m=float(rng.uniform(0.3, 1.0)),
            variation=config.trough_variation,
            variation_rng=landforms.kind_rng(config.seed, "troughs"),
        )
    kinds = landforms.add_kinds(config, height)
    boulders = terrain.random_boulders(rng, shape, s, config.n_boulders)
    if "dune_layer" in kinds:  # no boulders lie on sand
        boulders = [b for b in boulders if kinds["dune_layer"][int(b.row), int(b.col)] < 0.3]
    for row, col, radius_m, _contrast, *extra in config.ice_at:
        if extra and extra[0] > 0:  # the placed patch's own boulder, equatorward of it, as high as its radius
            offset_px = (extra[0] + 0.5 * radius_m) / s
            boulders.append(terrain.Boulder(row - pole * offset_px, col, float(extra[0]), 1.0 * float(extra[0])))
    base = height.copy()
    terrain.add_boulders(height, boulders, s)
    boulder_layer = height - base

    # 2. albedo
    field = terrain.low_frequency_relief(rng, shape, s, amplitude_m=1.0, centred=config.centred_relief)
    albedo = 0.2 * (1.0 + 0.12 * field)
    albedo *= 1.0 + 0.04 * rng.standard_normal(shape).astype(np.float32)
    albedo = np.clip(albedo, 0.05, 0.5).astype(np.float32)
    if "albedo_factor" in kinds:  # beds and outcrops scale the same albedo texture
        albedo = np.clip(albedo * kinds["albedo_factor"], 0.05, 0.8).astype(np.float32)

    # 3. ice patches in and beside shade, poleward of landforms
    ice_opacity = np.zeros(shape, dtype=np.float32)  # brightness boost: opacity x contrast
    ice_shape = np.zeros(shape, dtype=np.float32)  # opacity alone, for the truth mask
    patches: list[dict] = []
    big = [b for b in boulders if b.radius_m >= 0.7 and 20 < b.row < shape[0] - 20 and 20 < b.col < shape[1] - 20]
    for b in rng.permutation(np.array(big, dtype=object))[: config.n_ice_boulder] if big else []:
        radius_m = float(rng.uniform(*config.ice_radius_m))
        bearing = math.radians(float(rng.uniform(-40, 40)))  # around due poleward
        dist_px = (b.radius_m + 0.5 * radius_m) / s
        row = b.row + pole * dist_px * math.cos(bearing)
        col = b.col + dist_px * math.sin(bearing)
        patches.append({"row": row, "col": col, "radius_m": radius_m, "kind": "boulder"})
    for c in craters[: config.n_ice_crater]:
        radius_m = float(min(c.radius_m * 0.35, rng.uniform(3.0, 12.0)))
        row = c.row - pole * 0.55 * c.radius_m / s  # inner wall on the equator side faces the pole
        patches.append({"row": row, "col": c.col, "radius_m": radius_m, "kind": "crater"})
    for row, col, radius_m, contrast, *_ in config.ice_at:
        patches.append({"row": row, "col": col, "radius_m": radius_m, "kind": "placed", "contrast": contrast})
    for p in patches:
        contrast = p.setdefault("contrast", float(rng.uniform(*config.ice_contrast)))
        window, op = _soft_disc(
            shape,
            p["row"],
            p["col"],
            p["radius_m"] / s,
            edge_px=max(1.0, 0.4 / s),
            aspect=float(rng.uniform(1.0, 2.0)),
            angle=float(rng.uniform(0, math.pi)),
        )
        ice_shape[window] = np.maximum(ice_shape[window], op)
        ice_opacity[window] = np.maximum(ice_opacity[window], op * contrast)
    on_ground = boulder_layer < 0.05  # ice lies on the ground, not on boulder tops
    ice_opacity *= on_ground
    ice = (ice_shape > 0.5) & on_ground

    # 4. decoys: bright dust on sun-facing slopes, dark sublimation spots
    dust = np.zeros(shape, dtype=bool)
    sun_side = np.zeros(shape, dtype=np.float32)
    az = math.radians(config.sun_azimuth)
    for b in rng.permutation(np.array(big, dtype=object))[: config.n_dust] if big else []:
        radius_m = float(rng.uniform(1.0, 5.0))
        dist_px = (b.radius_m + 0.5 * radius_m) / s
        row = b.row - dist_px * math.cos(az)
        col = b.col + dist_px * math.sin(az)
        window, op = _soft_disc(shape, row, col, radius_m / s, max(1.0, 0.4 / s), 1.3, float(rng.uniform(0, math.pi)))
        sun_side[window] = np.maximum(sun_side[window], op * float(rng.uniform(0.6, 1.4)))
    dust = sun_side > 0.3
    for _ in range(config.n_dark_spots):
        window, op = _soft_disc(
            shape,
            float(rng.uniform(0, shape[0])),
            float(rng.uniform(0, shape[1])),
            float(rng.uniform(2, 8)) / s,
            2.0,
            1.0,
            0.0,
        )
        albedo[window] *= 1.0 - 0.5 * op

    # 5. illumination (direct light is needed first by the decoys on sunlit slopes)
    direct = illumination.lambert(height, s, config.sun_azimuth, config.incidence)
    decoys = {}
    if config.n_slope_dust or config.n_frost:
        slope_dust, frost = landforms.sun_side_decoys(config, direct, kinds.get("dune_layer"))
        decoys = {"slope_dust": slope_dust > 0.3, "frost": frost > 0.3}
        sun_side = np.maximum(sun_side, slope_dust)
        dust = sun_side > 0.3
        sun_side = sun_side + frost
    if "outcrops" in kinds:
        decoys["outcrops"] = kinds["outcrops"]
    effective_albedo = albedo * (1.0 + ice_opacity + sun_side)

    shadow = illumination.cast_shadows(height, s, config.sun_azimuth, config.incidence)
    ambient = 0.25 * math.cos(math.radians(config.incidence))
    iof = effective_albedo * (direct * ~shadow + ambient)
    if config.low_contrast > 0:
        iof = landforms.haze(iof, config.low_contrast)

    # 6. instrument
    if config.noise:
        iof = iof + rng.normal(0.0, 1.0, shape).astype(np.float32) * np.sqrt(0.0004 * iof + 1e-6)
    lo, hi = np.percentile(iof, [0.1, 99.9])
    scaling = float((hi - lo) / 700.0) or 1e-4
    offset = float(lo - 120.0 * scaling)
    if config.low_contrast > 0:  # the scene fills a narrower band of DNs around the usual middle
        span = 700.0 * (1.0 - 0.6 * config.low_contrast)
        scaling = float((hi - lo) / span) or 1e-4
        offset = float(lo - (120.0 + (700.0 - span) / 2) * scaling)
    dn_float = (iof - offset) / scaling
    if config.ccd_offsets:
        dn_float = _ccd_effects(dn_float, config, rng)
    dn = np.clip(np.rint(dn_float), 3, 1021).astype(np.uint16)

    hot = np.zeros(shape, dtype=bool)
    for n, values in ((config.n_hot_special, (1022, 1023)), (config.n_hot_ordinary, None)):
        for _ in range(n):
            r, c = int(rng.integers(1, shape[0] - 2)), int(rng.integers(1, shape[1] - 2))
            size = int(rng.integers(1, 3))
            value = int(rng.choice(values)) if values else int(rng.integers(900, 1000))
            dn[r : r + 1, c : c + size] = value
            hot[r : r + 1, c : c + size] = True

    nodata = _strip_margins(shape, config.nodata_margin)
    dn[nodata] = 0
    for layer in (ice, hot, dust, *decoys.values()):
        layer &= ~nodata
    return Scene(
        config=config,
        dn=dn,
        height=height,
        ice=ice,
        shadow=shadow,
        hot=hot,
        dust=dust,
        nodata=nodata,
        scaling_factor=scaling,
        offset=offset,
        ice_patches=patches,
        albedo=albedo,
        landforms=kinds,
        decoys=decoys,
    )


def ccd_width_px(scale_m: float) -> int:
    """Width of one RED CCD in the map-projected product: 2048 unbinned pixels at 0.25 m/pixel."""
    return max(1, round(2048 * 0.25 / scale_m))


def _ccd_effects(dn: np.ndarray, config: SceneConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-CCD gain (1 ± 1.5 %) and offset (± 2 DN) in vertical strips, and 1.5× noise within 2 px of seams.

    Map-projected RED strips run roughly north-south, so CCD boundaries are columns; the product's
    own skew is ignored here (a few degrees for HiRISE).
    """
    width = ccd_width_px(config.scale_m)
    cols = np.arange(dn.shape[1])
    ccd = cols // width
    n = int(ccd.max()) + 1
    gain = 1.0 + rng.normal(0.0, 0.015, n)
    offset = rng.normal(0.0, 2.0, n)
    out = dn * gain[ccd][None, :] + offset[ccd][None, :]
    seam = np.abs(((cols + width / 2) % width) - width / 2) <= 2
    seam[:3] = False
    out[:, seam] += rng.normal(0.0, 1.5, (dn.shape[0], int(seam.sum())))
    return out


def _strip_margins(shape: tuple[int, int], margin: float) -> np.ndarray:
    """Black margins of a skewed strip: a triangle at the top-left and one at the bottom-right."""
    rows, cols = shape
    if margin <= 0:
        return np.zeros(shape, dtype=bool)
    width = margin * cols
    rr, cc = np.mgrid[0:rows, 0:cols]
    left = cc < width * (1.0 - rr / rows)
    right = cc >= cols - width * (rr / rows)
    return left | right
