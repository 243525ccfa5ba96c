"""Real HiRISE tiles as training and tuning data: ice-free negatives and planted-patch positives.

The source is the HiRISE landmark set's layout (a folder with ``tiles.csv``: file, class, observation,
``frost_prior``, ``split``; 227 px tiles of reduced-resolution map-projected RDRs). Rules, fixed before any run:

* Only rows with ``split = open`` are ever read here. Rows with ``split = heldout`` are for evaluation only
  (``bench/real_pixels.py``): never training, threshold choice or model choice.
* Only tiles whose ``frost_prior`` says no frost is expected (``no_...``) are used: frost-season bright dunes are
  seasonal frost, neither the ice we look for nor surely ice-free.
* The open observations are split once, by observation (so no observation is in both): 80 % for training, 20 %
  for tuning the threshold (:func:`split_observations`, a fixed seed). Tuning tiles never reach training.

Each training tile gives one negative (in 40 % of tiles with a shadow, carrying a sunlit decoy) and, when it has a
shadow, one positive with 1-3 planted patches (:mod:`marsice_plugin.cnn.planting`): real texture appears in both
classes in equal measure, so it cannot be the cue.

**Scale.** A tile (a few m/px) is brought to the model input by bilinear resizing of the whole tile, as
``bench/real_pixels.py`` scores held-out tiles: the ground scale is coarser than a chunk's, but both classes share
it, and the planted patches are sized in input pixels to match the rendered ones (see planting). Pixel values: the
8-bit tile is brought to the 10-bit DN scale by the product rule for 8-bit integers (DN x 1023 / 255,
:mod:`marsice_plugin.normalisation`), as detect does for an 8-bit product.

**Sun geometry** of each tile is its observation's, looked up by observation id in a HiRISE RDR index
(``FILE_NAME``, ``SUB_SOLAR_AZIMUTH``, ``NORTH_AZIMUTH``). The tiles are cut from the RDRs' map-projected images,
so what planting and turning need is the sun's direction in that image: SUB_SOLAR_AZIMUTH - 270, clockwise from up
(:func:`sun_azimuths` with ``frame="image"``). On an equirectangular RDR north is up (NORTH_AZIMUTH 270 in every
row of the index) and that is the azimuth from north; on the polar stereographic RDRs poleward of ±65° (a third of
the open tiles with an indexed sun) north is turned, 93° at the median. Until 2026-12-07 the azimuth from north
was used for every tile; the shipped weights were trained so (their cards say so). On the open polar tiles the
direction of their shading gradients lies within 30° of the image-frame sun about five times as often as of the
azimuth from north (``bench/sun_prior.py``'s shading measure; 9 observations, mostly dunes).
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TrainingDataError
from ..labels import sun_azimuth_from_north
from ..normalisation import DN_MAX, bits_scale

#: Share of the open observations kept for threshold tuning, and the seed of that one split.
TUNE_FRACTION = 0.2
SPLIT_SEED = 2026
#: Share of training tiles with a shadow whose negative carries a sunlit decoy.
DECOY_FRACTION = 0.4


@dataclass(frozen=True)
class RealTile:
    """One ice-free real tile: its file, observation and the sun's direction in it (degrees clockwise from up)."""

    path: Path
    observation: str
    sun_azimuth: float


#: :func:`sun_azimuths`'s frames: degrees clockwise from north, or from "up" in the observation's RDR image.
SUN_FRAMES = ("north", "image")


def sun_azimuths(index: Path, frame: str = "north") -> dict[str, float]:
    """The sun of every observation of a HiRISE RDR index (CSV, optionally gzipped), in degrees clockwise.

    ``frame="north"``: its azimuth from north, (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360. ``frame="image"``: its
    direction in the RDR's map-projected image from "up", (SUB_SOLAR_AZIMUTH - 270) mod 360 (both label azimuths
    are clockwise from the image's right-edge axis), what tiles cut from those images are planted and turned by;
    the same on north-up (equirectangular) RDRs, not on polar stereographic ones.
    """
    if frame not in SUN_FRAMES:
        raise ValueError(f"frame must be one of {SUN_FRAMES}, not {frame!r}")
    opener = gzip.open if index.suffix == ".gz" else open
    out: dict[str, float] = {}
    try:
        with opener(index, "rt", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                try:
                    up = float(row["NORTH_AZIMUTH"]) if frame == "north" else 270.0  # "up" is 270 from the right
                    azimuth = sun_azimuth_from_north(float(row["SUB_SOLAR_AZIMUTH"]), up)
                except (KeyError, ValueError):
                    continue
                out.setdefault(row["FILE_NAME"][:15], azimuth)
    except (OSError, csv.Error) as exc:
        raise TrainingDataError(f"{index}: cannot read this HiRISE RDR index ({exc})") from exc
    if not out:
        raise TrainingDataError(f"{index}: no row with FILE_NAME, SUB_SOLAR_AZIMUTH and NORTH_AZIMUTH")
    return out


def split_observations(observations: list[str]) -> tuple[set[str], set[str]]:
    """(training, tuning) observations: the fixed split of the module docstring."""
    ordered = sorted(set(observations))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(ordered))
    n_tune = round(TUNE_FRACTION * len(ordered))
    tune = {ordered[i] for i in order[:n_tune]}
    return set(ordered) - tune, tune


def open_tiles(root: Path, index: Path, part: str) -> list[RealTile]:
    """The ice-free open-split tiles of ``part`` ("train" or "tune"); never a held-out row."""
    if part not in ("train", "tune"):
        raise ValueError(f"part must be 'train' or 'tune', not {part!r}")
    table = root / "tiles.csv"
    if not table.is_file():
        raise TrainingDataError(f"{root}: no tiles.csv; give the landmark tile folder (tiles.csv with a split column)")
    with table.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("split") == "open" and r["frost_prior"].startswith("no_")]
    training, tuning = split_observations([r["observation"] for r in rows])
    wanted = training if part == "train" else tuning
    suns = sun_azimuths(index, frame="image")
    return [
        RealTile(root / r["file"], r["observation"], suns[r["observation"]])
        for r in rows
        if r["observation"] in wanted and r["observation"] in suns
    ]


def grey8(path: Path) -> np.ndarray:
    """An 8-bit image file as grey float32 (colour: the mean of its bands, as COLOR products are read)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im, dtype=np.float32)
    return arr.mean(axis=2) if arr.ndim == 3 else arr


def tile_input(grey: np.ndarray, size: int) -> np.ndarray:
    """An 8-bit tile as one model input: 8-bit -> 10-bit DN scale, resized to ``size`` (bilinear), / 1023."""
    from PIL import Image

    dn = bits_scale(8, "8-bit tile").to_dn(grey)
    resized = np.asarray(Image.fromarray(dn, mode="F").resize((size, size), Image.BILINEAR))
    return np.clip(resized / DN_MAX, 0.0, 1.0).astype(np.float32)


def real_examples(tiles: list[RealTile], size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model inputs, labels and sun azimuths of the negatives and planted positives of ``tiles`` (docstring)."""
    from .planting import plant

    rng = np.random.default_rng(seed)
    xs, ys, suns = [], [], []
    for tile in tiles:
        grey = grey8(tile.path)
        negative = grey
        if rng.random() < DECOY_FRACTION:
            decoyed, mask = plant(grey, tile.sun_azimuth, rng, "decoy", count=int(rng.integers(1, 3)))
            negative = decoyed if mask.any() else grey
        xs.append(tile_input(negative, size))
        ys.append(0.0)
        suns.append(tile.sun_azimuth)
        planted, mask = plant(grey, tile.sun_azimuth, rng, "ice", count=int(rng.integers(1, 4)))
        if mask.any():
            xs.append(tile_input(planted, size))
            ys.append(1.0)
            suns.append(tile.sun_azimuth)
    if not xs:
        raise TrainingDataError("no real tile could be read")
    return np.stack(xs)[..., None], np.array(ys, dtype=np.float32), np.array(suns)
