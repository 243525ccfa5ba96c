"""Labelled training chunks rendered by the scene renderer (never from the evaluation seeds).

A chunk is labelled 1 ("bright patch consistent with remnant ice") when it holds at least
``min_ice_pixels`` (16) planted ice pixels, else 0: the same rule the evaluation's chunk truth uses
(:func:`marsice_plugin.truth.chunk_truth`), so the model learns the concept it is judged on. The sun
geometry (azimuth, incidence) is drawn jointly from the real HiRISE observations of the paper's band
(:func:`marsice_plugin.synthetic.geometry.sample_geometry`), and half of the chunks carry the
per-CCD gain/offset steps of real RDRs. Negatives are hard on purpose: they carry the paper's failure
modes (hot pixels at special and ordinary DNs, bright dust on sunlit slopes, dark spots, low
contrast), so the net cannot learn "any bright pixel is ice".

With ``read_level`` L > 0 each chunk is encoded as the products are (10-bit lossless JPEG2000, the
sample writer's settings) and decoded at resolution level L, then repaired and reduced exactly as
``marsice detect --read-level L`` does: a model meant for the fast read learns the wavelet low-pass
(and hot pixels already blended into it) that it will see, not an area average.

With ``edge_nodata`` P > 0 a fraction P of the chunks lose a skewed band along their left or right
side to no-data (DN 0), as the chunks along a map-projected strip's edges do: every chunk of a product
whose swath is narrower than its bounding box touches the black margin. The band is drawn from its own
random stream (``(seed, 1)``), so the scene itself is the one P = 0 renders; ice under the band is
gone from the label too. Measured on 160 level-2 chunks: a level-2 model trained without such bands
(the first stage of the default model) drops from ROC-AUC 0.962 to 0.937 when they are added.

With ``hard_ice`` P > 0 a fraction P of the chunks planted with ice get only small, faint patches
beside their boulders (radius 1–2.5 m instead of 1–6 m, contrast 0.25–0.6 instead of 0.25–1.5): the
patches every shipped model misses most. The choice comes from its own random stream (``(seed, 2)``)
and a patch's size and contrast are one draw each whatever their range, so the terrain, decoys and
patch places are the scene P = 0 renders (patches sit a little closer to their boulders, by half the
smaller radius). Chunks without ice are unchanged.

With ``terrain_kinds`` the chunk's scene also gets the renderer's optional terrain kinds and decoys
(:mod:`marsice_plugin.synthetic.landforms`: dunes, layered deposits, gullies, small polygons with varied
troughs, bright outcrops, dust on sun-facing slopes and dune crests, CO2-frost-like patches on sunlit slopes,
low contrast), each drawn at the rate :data:`TERRAIN_KIND_RATES` states, from its own random stream
(``(seed, 3)``) and independently of the label, so no kind says "ice" or "no ice". The base scene is the one
``terrain_kinds=False`` draws: old draws keep their pixels, and the seeds a model card names still mean the
same chunks.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np

from ..synthetic.scene import SceneConfig, render
from .preprocess import prepare

#: Seeds at and above this value are reserved for evaluation sets; training never draws them.
EVALUATION_SEED_BASE = 1_000_000


def random_chunk_config(rng: np.random.Generator, seed: int, size: int, with_ice: bool) -> SceneConfig:
    """A chunk-sized scene with geometry drawn from the real observations of the paper's band."""
    from ..synthetic.geometry import sample_geometry

    geometry = sample_geometry(rng)
    return SceneConfig(
        width=size,
        height=size,
        scale_m=float(rng.choice([0.25, 0.5])),
        sun_azimuth=float(geometry.sun_azimuth),
        incidence=float(geometry.incidence),
        ccd_offsets=bool(rng.random() < 0.5),
        seed=seed,
        n_craters=int(rng.integers(0, 3)),
        n_boulders=int(rng.integers(50, 900)),
        polygons=bool(rng.random() < 0.6),
        n_ice_boulder=int(rng.integers(1, 5)) if with_ice else 0,
        n_ice_crater=int(rng.random() < 0.3) if with_ice else 0,
        ice_contrast=(0.25, 1.5),
        n_dust=int(rng.integers(0, 4)),
        n_dark_spots=int(rng.integers(0, 3)),
        n_hot_special=int(rng.integers(0, 8)),
        n_hot_ordinary=int(rng.integers(0, 8)),
        nodata_margin=0.0,
    )


#: Patch radius (metres) and contrast of the small, faint patches of ``hard_ice`` chunks.
HARD_ICE_RADIUS_M = (1.0, 2.5)
HARD_ICE_CONTRAST = (0.25, 0.6)


def chunk_config(
    seed: int, size: int, with_ice: bool, hard_ice: float = 0.0, terrain_kinds: bool = False
) -> SceneConfig:
    """The scene of one training chunk; with ``hard_ice`` P, a fraction P of ice chunks get small faint patches,
    with ``terrain_kinds`` the optional terrain kinds and decoys at their stated rates (module docstring)."""
    config = random_chunk_config(np.random.default_rng(seed), seed, size, with_ice)
    if with_ice and hard_ice > 0 and np.random.default_rng((seed, 2)).random() < hard_ice:
        config = replace(config, ice_radius_m=HARD_ICE_RADIUS_M, ice_contrast=HARD_ICE_CONTRAST)
    if terrain_kinds:
        config = draw_terrain_kinds(config, seed)
    return config


#: Chance that a ``terrain_kinds`` chunk gets each kind (drawn independently); the counts and strengths drawn
#: with them are in :func:`draw_terrain_kinds`. The project's choice, not measured frequencies on HiRISE.
TERRAIN_KIND_RATES = {
    "dunes": 0.2,
    "layered": 0.1,
    "gullies": 0.15,
    "small_polygons": 0.25,
    "trough_variation": 0.5,
    "outcrops": 0.15,
    "slope_dust": 0.3,
    "frost": 0.15,
    "low_contrast": 0.15,
}


def draw_terrain_kinds(config: SceneConfig, seed: int) -> SceneConfig:
    """``config`` with terrain kinds and decoys drawn at :data:`TERRAIN_KIND_RATES` from stream ``(seed, 3)``.

    Every kind's chance and strength is drawn whether or not it is taken, so the stream's draws mean the same
    thing in every chunk.
    """
    rng = np.random.default_rng((seed, 3))
    on = {kind: bool(rng.random() < rate) for kind, rate in TERRAIN_KIND_RATES.items()}
    counts = rng.integers(1, 5, size=3)
    variation, haze = float(rng.uniform(0.2, 0.6)), float(rng.uniform(0.3, 0.8))
    return replace(
        config,
        dunes=on["dunes"],
        layered=on["layered"],
        n_gullies=int(counts[0]) if on["gullies"] else 0,
        small_polygons=on["small_polygons"],
        trough_variation=variation if on["trough_variation"] else 0.0,
        n_outcrops=int(counts[1]) if on["outcrops"] else 0,
        n_slope_dust=int(counts[2]) if on["slope_dust"] else 0,
        n_frost=int(rng.integers(1, 4)) if on["frost"] else 0,
        low_contrast=haze if on["low_contrast"] else 0.0,
        centred_relief=True,  # new draws get the albedo texture the old renderer clipped away (SceneConfig)
    )


#: Special values of the generated 10-bit products (null 0, low saturation 1-2, high saturation 1022-1023).
SPECIAL_DNS = (0, 1, 2, 1022, 1023)


def decode_level(dn: np.ndarray, level: int) -> np.ndarray:
    """``dn`` as the JPEG2000 decoder returns resolution ``level`` of a product written like the samples."""
    import tempfile
    import warnings
    from pathlib import Path

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from ..synthetic.product_writer import write_jp2

    with tempfile.TemporaryDirectory(prefix="marsice-level-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        path = Path(tmp) / "chunk.jp2"
        write_jp2(path, dn)
        with rasterio.open(path, OVERVIEW_LEVEL=str(level - 1)) as ds:
            return ds.read(1)


def edge_band(rng: np.random.Generator, size: int) -> np.ndarray:
    """A strip-edge no-data band: skewed, 3–25 % of the chunk wide, on its left or right side.

    Map-projected strips are skewed parallelograms inside their bounding box, so a chunk at the edge
    holds a black trapezoid whose width changes linearly down the chunk.
    """
    top, bottom = rng.uniform(0.03, 0.25, size=2) * size
    rows = np.arange(size, dtype=np.float32)[:, None]
    width = top + (bottom - top) * rows / max(size - 1, 1)
    band = np.arange(size, dtype=np.float32)[None, :] < width
    return band[:, ::-1] if rng.random() < 0.5 else band


def render_chunk(
    seed: int,
    size: int,
    with_ice: bool,
    read_level: int = 0,
    edge_nodata: float = 0.0,
    hard_ice: float = 0.0,
    terrain_kinds: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One training chunk's DNs (as decoded at ``read_level``), its full-size ice truth and sun azimuth."""
    config = chunk_config(seed, size, with_ice, hard_ice, terrain_kinds)
    scene = render(config)
    dn, ice = scene.dn, scene.ice
    edge_rng = np.random.default_rng((seed, 1))
    if edge_nodata > 0 and edge_rng.random() < edge_nodata:
        band = edge_band(edge_rng, size)
        dn = np.where(band, 0, dn).astype(dn.dtype)
        ice = ice & ~band
    if read_level:
        dn = decode_level(dn, read_level)
    return dn, ice, config.sun_azimuth


def _render_one(args: tuple[int, int, int, bool, int, int, float, float, bool]) -> tuple[np.ndarray, int, float]:
    seed, size, input_size, with_ice, min_ice_pixels, read_level, edge_nodata, hard_ice, kinds = args
    dn, ice, sun_azimuth = render_chunk(seed, size, with_ice, read_level, edge_nodata, hard_ice, kinds)
    special = np.isin(dn, SPECIAL_DNS)
    x, _ = prepare(dn.astype(np.float32), ~special, dn == 0, dn.shape[0], input_size, 1023.0)
    return x, int(ice.sum() >= min_ice_pixels), sun_azimuth


def synthetic_chunks(
    count: int,
    seed: int = 0,
    size: int = 1024,
    input_size: int = 256,
    min_ice_pixels: int = 16,
    workers: int = 2,
    read_level: int = 0,
    edge_nodata: float = 0.0,
    hard_ice: float = 0.0,
    terrain_kinds: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``count`` chunks (half planted with ice); return model inputs, labels and sun azimuths.

    ``edge_nodata`` is the fraction of chunks given a strip-edge no-data band, ``hard_ice`` the fraction
    of ice chunks given only small faint patches, ``terrain_kinds`` adds the renderer's optional terrain
    kinds and decoys at :data:`TERRAIN_KIND_RATES` (module docstring).
    """
    if seed + 2 * count >= EVALUATION_SEED_BASE:
        raise ValueError("training seeds would overlap the reserved evaluation seeds")
    if read_level < 0 or size % 2**read_level or size // 2**read_level < input_size:
        raise ValueError(f"read level {read_level} of {size}-px chunks is smaller than the {input_size}-px input")
    if not 0.0 <= edge_nodata <= 1.0:
        raise ValueError(f"edge_nodata is a fraction of the chunks, between 0 and 1, not {edge_nodata}")
    if not 0.0 <= hard_ice <= 1.0:
        raise ValueError(f"hard_ice is a fraction of the ice chunks, between 0 and 1, not {hard_ice}")
    jobs = [
        (seed + i, size, input_size, i % 2 == 0, min_ice_pixels, read_level, edge_nodata, hard_ice, terrain_kinds)
        for i in range(count)
    ]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_render_one, jobs, chunksize=4))
    else:
        results = [_render_one(j) for j in jobs]
    x = np.stack([r[0] for r in results])[..., None]
    y = np.array([r[1] for r in results], dtype=np.float32)
    return x, y, np.array([r[2] for r in results])
