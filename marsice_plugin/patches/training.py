"""Training and tuning examples for the second stage: the brightness rule's own candidates, labelled.

The network must judge what the rule outlines, so its examples are exactly that: the rule
(:func:`marsice_plugin.candidates.delineate`, every chunk searched, no first-stage threshold) run on

* **rendered products** (:func:`scene_examples`): scenes of the renderer with ice truth and its decoys (boulder
  faces, dust on sunlit slopes, dark spots, hot pixels at special and ordinary DNs, per-CCD steps), written as
  products (10-bit JPEG2000 + PDS3 label) and read back as ``detect`` reads them. A candidate is *ice* when at least
  :data:`MIN_ICE_SHARE` of its pixels are truth ice (the renderer's half-opacity outline), so a boulder face that
  merely touches a patch is not;
* **real ice-free pixels** (:func:`array_examples`): any grey image with no ice, e.g. real HiRISE tiles; every
  candidate there is a negative. The training script (``bench/train_patch_model.py``) reads them; this module only
  sees arrays.

Seeds: scenes are drawn from their seed alone (:func:`scene_config`). Training and tuning seeds stay below
:data:`~marsice_plugin.cnn.training_data.EVALUATION_SEED_BASE` and clear of every other training range.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..candidates import CandidateOptions, patch_mask
from .crops import CROP_PX, crop_centre, crop_input, source_side

#: A candidate is labelled ice when at least this share of its pixels is truth ice.
MIN_ICE_SHARE = 0.2
#: Side of a rendered training scene (pixels).
SCENE_PX = 1024


@dataclass
class Examples:
    """Crops, labels and, for rendered scenes, what the evaluation counts (touching ice, area)."""

    x: list[np.ndarray] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    touches_ice: list[bool] = field(default_factory=list)
    area_m2: list[float] = field(default_factory=list)
    source: list[str] = field(default_factory=list)

    def extend(self, other: Examples) -> None:
        for key in ("x", "y", "touches_ice", "area_m2", "source"):
            getattr(self, key).extend(getattr(other, key))


def scene_config(seed: int) -> tuple[object, object]:
    """A training scene and its product geometry, drawn from ``seed`` (real sun geometry of the paper's band)."""
    from ..synthetic.geometry import sample_geometry
    from ..synthetic.product_writer import ProductGeometry
    from ..synthetic.scene import SceneConfig

    rng = np.random.default_rng(seed)
    g = sample_geometry(rng)
    hard = rng.random() < 0.3  # small, faint patches: the ones the chunk model misses
    config = SceneConfig(
        width=SCENE_PX,
        height=SCENE_PX,
        scale_m=float(rng.choice([0.25, 0.5])),
        sun_azimuth=float(g.sun_azimuth),
        incidence=float(g.incidence),
        seed=seed,
        n_craters=int(rng.integers(0, 3)),
        n_boulders=int(rng.integers(100, 700)),
        polygons=bool(rng.random() < 0.5),
        n_ice_boulder=int(rng.integers(0, 8)),
        n_ice_crater=int(rng.random() < 0.3),
        ice_contrast=(0.25, 0.6) if hard else (0.25, 1.5),
        ice_radius_m=(1.0, 2.5) if hard else (1.0, 6.0),
        n_dust=int(rng.integers(0, 5)),
        n_dark_spots=int(rng.integers(0, 4)),
        n_hot_special=int(rng.integers(0, 10)),
        n_hot_ordinary=int(rng.integers(0, 12)),
        nodata_margin=0.08 if rng.random() < 0.3 else 0.0,
        ccd_offsets=bool(rng.random() < 0.5),
    )
    geometry = ProductGeometry(
        center_latitude=float(g.latitude), solar_longitude=float(g.solar_longitude), local_time=float(g.local_time)
    )
    return config, geometry


def all_candidates(
    product: object, min_contrast: float = CandidateOptions.min_contrast, join_diagonals: bool = False
) -> list:
    """The rule's candidates (seeded at ``min_contrast``; patches joined at corners with ``join_diagonals``, see
    :func:`~marsice_plugin.candidates.bridge_diagonals`) in every chunk of a product, with no first-stage
    threshold."""
    from ..candidates import delineate
    from ..grid import Window
    from ..stitching import ProbabilityRaster

    cell = 64
    raster = ProbabilityRaster(
        np.ones((product.height // cell + 1, product.width // cell + 1), np.float32), cell, product.transform
    )
    windows = [
        Window(c, r, min(1024, product.width - c), min(1024, product.height - r))
        for r in range(0, product.height, 1024)
        for c in range(0, product.width, 1024)
    ]
    options = CandidateOptions(threshold=0.0, min_contrast=min_contrast, join_diagonals=join_diagonals)
    return delineate(product, windows, raster, options)


def ice_share(product: object, geometry: object, ice: np.ndarray) -> tuple[float, bool]:
    """(share of the outline's pixels that are truth ice, whether it touches any)."""
    from rasterio import features

    inside = features.rasterize([(geometry, 1)], out_shape=ice.shape, transform=product.transform, dtype="uint8")
    n = int(inside.sum())
    on = int((inside.astype(bool) & ice).sum())
    return (on / n if n else 0.0), on > 0


def scene_examples(
    seed: int, min_contrast: float = CandidateOptions.min_contrast, join_diagonals: bool = False
) -> Examples:
    """Crops and labels of every candidate the rule finds in the product rendered from ``seed``.

    ``min_contrast`` is the rule's seed level: 0.5 as in flagged search, or
    :data:`~marsice_plugin.candidates.SMALL_PATCH_CONTRAST` for the fainter outlines ``--search all`` adds.
    ``join_diagonals``: outline each 8-connected patch as one polygon, as detect would with
    ``CandidateOptions.join_diagonals``, so a model can be trained on the outlines it would then judge.
    """
    from ..product import open_product
    from ..synthetic.product_writer import write_sample_product
    from .stage import product_crop

    config, geometry = scene_config(seed)
    out = Examples()
    with tempfile.TemporaryDirectory(prefix="marsice-patch-") as tmp:
        sample = write_sample_product(Path(tmp), config, geometry)
        with open_product(sample.label_path) as product:
            for cand in all_candidates(product, min_contrast, join_diagonals):
                share, touches = ice_share(product, cand.geometry, sample.scene.ice)
                out.x.append(product_crop(product, cand.geometry))
                out.y.append(float(share >= MIN_ICE_SHARE))
                out.touches_ice.append(touches)
                out.area_m2.append(cand.area_m2)
                out.source.append(f"scene:{seed}")
    return out


def array_examples(
    grey: np.ndarray,
    scale_m: float,
    sun_azimuth: float,
    source: str,
    limit: int = 40,
    min_contrast: float = CandidateOptions.min_contrast,
    ice: np.ndarray | None = None,
) -> Examples:
    """Negatives from an ice-free grey image: a crop around each bright patch the rule outlines (at most ``limit``).

    The rule's mask on the whole image, split into 8-connected patches; patches under the rule's minimum area or
    longer than its elongation limit (bounding box) are skipped, as :func:`~marsice_plugin.candidates.delineate`
    drops them.

    ``ice`` (a mask of ``grey``'s shape) marks patches planted into the image
    (:func:`marsice_plugin.cnn.planting.plant`): a candidate is then labelled ice by the rendered scenes' rule (at
    least :data:`MIN_ICE_SHARE` of its pixels on the mask). Without it every candidate is a negative.
    """
    from scipy import ndimage

    options = CandidateOptions(threshold=0.0, min_contrast=min_contrast)
    valid = np.isfinite(grey) & (grey > 0)
    mask, _ = patch_mask(np.where(valid, grey, 0).astype(np.float32), valid, scale_m, options)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    out = Examples()
    min_px = max(1, int(options.min_area_m2 / scale_m**2))
    side = source_side(scale_m)
    pad = side
    padded = np.pad(grey.astype(np.float32), pad)
    padded_valid = np.pad(valid, pad)
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or len(out.x) >= limit:
            continue
        component = labels[box] == k
        h, w = component.shape
        if component.sum() < min_px or max(h, w) > options.max_elongation * min(h, w):
            continue
        rows, cols = np.nonzero(component)
        c_row, c_col = crop_centre(rows.mean() + box[0].start, cols.mean() + box[1].start, scale_m, sun_azimuth)
        r0, c0 = round(float(c_row - side / 2)) + pad, round(float(c_col - side / 2)) + pad
        window = (slice(r0, r0 + side), slice(c0, c0 + side))
        own = np.pad(labels == k, pad)[window]
        centre = (c_row + pad - r0, c_col + pad - c0)
        crop = crop_input(padded[window], padded_valid[window], own, centre, scale_m, sun_azimuth)
        assert crop.shape == (CROP_PX, CROP_PX, 2)
        on = int((component & ice[box]).sum()) if ice is not None else 0
        out.x.append(crop)
        out.y.append(float(on >= MIN_ICE_SHARE * component.sum()) if on else 0.0)
        out.touches_ice.append(on > 0)
        out.area_m2.append(float(component.sum() * scale_m**2))
        out.source.append(source)
    return out
