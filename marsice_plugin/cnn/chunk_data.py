"""Labelled chunks from disk: the paper's ``0/`` + ``1/`` folders, or a tile index labelled in QGIS.

Two layouts feed ``marsice train`` and ``marsice evaluate``:

* a folder with sub-folders ``0/`` (no ice) and ``1/`` (ice) of chunk images, as the paper sorted
  its chunks: PNG, JPEG or TIFF, 8- or 16-bit integers or float;
* the tile index that ``marsice tile`` writes (``ID_tiles.gpkg``, layer ``tiles``) after its
  ``label`` column was filled in QGIS (1 ice, 0 none; rows left NULL are not used), with the chunk
  GeoTIFFs beside it.

Pixel values are brought to the model's 10-bit DN scale by the rule detection uses
(:func:`marsice_plugin.normalisation.image_scale`): the ``VALID_MAX`` tag that ``marsice tile`` writes into its
GeoTIFFs (1023: their pixels are already 10-bit DN equivalents), else the smallest of 8/10/12/14/16 bits that holds
the image's largest pixel (a 10-bit chunk saved as uint16 reads as 10-bit, not as 1/64 of the range), else, for
float images, the renderer's percentile stretch; ``valid_max`` overrides all of it. No-data pixels (NaN in
the GeoTIFFs) are filled with the chunk's median so they read as neither bright nor dark. A chunk
is reduced to the model's input size by the same area average as in detection
(:func:`marsice_plugin.cnn.preprocess.model_input`).

The sun azimuth of each chunk (for :mod:`marsice_plugin.cnn.augment`) is read from the GeoTIFF's
``SUN_AZIMUTH`` tag when present, else the middle of the paper's band is assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TrainingDataError  # defined with every other MarsIce error; importable from here too
from ..gpkg import quote, read_layer
from ..normalisation import DN_MAX, image_scale
from .augment import DEFAULT_SUN_AZIMUTH
from .preprocess import model_input

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class LabelledChunks:
    """Model inputs ``x`` (N, S, S, 1) in [0, 1], labels ``y`` (N,), sun azimuths and source files."""

    x: np.ndarray
    y: np.ndarray
    sun_azimuth: np.ndarray
    files: list[str]
    source: str

    def describe(self) -> dict[str, object]:
        return {
            "source": self.source,
            "chunks": len(self.y),
            "positives": int(self.y.sum()),
            "negatives": int(len(self.y) - self.y.sum()),
        }


def read_chunk_image(path: Path, valid_max: float | None = None) -> tuple[np.ndarray, float, float]:
    """Grey pixels on the 10-bit DN scale (float32, NaN = no-data), the value that maps to 1.0, and the sun azimuth."""
    suffix = path.suffix.lower()
    sun = DEFAULT_SUN_AZIMUTH
    tag_max = None
    if suffix in (".tif", ".tiff"):
        import rasterio

        try:
            with rasterio.open(path) as ds:
                data = ds.read(1, masked=True)
                tags = ds.tags()
                dtype = ds.dtypes[0]
        except rasterio.errors.RasterioIOError as exc:
            raise TrainingDataError(f"{path}: cannot read this chunk image ({exc})") from exc
        pixels = np.ma.filled(data.astype(np.float32), np.nan)
        if "SUN_AZIMUTH" in tags:
            sun = float(tags["SUN_AZIMUTH"])
        if "VALID_MAX" in tags:
            tag_max = float(tags["VALID_MAX"])
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("L") if im.mode not in ("L", "I;16", "I", "F") else im)
        except (OSError, UnidentifiedImageError) as exc:
            raise TrainingDataError(f"{path}: cannot read this chunk image ({exc})") from exc
        dtype = str(arr.dtype)
        pixels = arr.astype(np.float32)
    valid = pixels[np.isfinite(pixels)]
    if valid_max is not None or valid.size == 0:  # a chunk without a valid pixel is refused by chunk_input
        return pixels, float(valid_max or DN_MAX), sun
    try:
        scale = image_scale(valid, str(dtype), tag_max)
    except ValueError as exc:
        raise TrainingDataError(f"{path}: {exc}") from exc
    return scale.to_dn(pixels), DN_MAX, sun


def chunk_input(pixels: np.ndarray, valid_max: float, input_size: int) -> np.ndarray:
    """One chunk image as model input, no-data filled with the median of the valid pixels."""
    valid = np.isfinite(pixels)
    if not valid.any():
        raise TrainingDataError("a chunk image holds no valid pixel")
    filled = np.where(valid, pixels, np.float32(np.median(pixels[valid])))
    size = max(pixels.shape)
    return model_input(filled, valid, size, input_size, valid_max)


def _load(items: list[tuple[Path, int]], input_size: int, valid_max: float | None, source: str) -> LabelledChunks:
    if not items:
        raise TrainingDataError(f"{source}: no labelled chunk images found")
    xs, suns = [], []
    for path, _ in items:
        pixels, vmax, sun = read_chunk_image(path, valid_max)
        try:
            xs.append(chunk_input(pixels, vmax, input_size))
        except TrainingDataError as exc:
            raise TrainingDataError(f"{path}: {exc}") from exc
        suns.append(sun)
    y = np.array([label for _, label in items], dtype=np.float32)
    return LabelledChunks(np.stack(xs)[..., None], y, np.array(suns), [str(p) for p, _ in items], source)


def load_folders(root: Path, input_size: int, valid_max: float | None = None) -> LabelledChunks:
    """Chunks sorted into ``root/0`` and ``root/1`` (the paper's layout)."""
    missing = [d for d in ("0", "1") if not (root / d).is_dir()]
    if missing:
        raise TrainingDataError(
            f"{root}: expected sub-folders 0/ (no ice) and 1/ (ice) of chunk images; missing: {', '.join(missing)}/"
        )
    items = [
        (p, label)
        for label in (0, 1)
        for p in sorted((root / str(label)).iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return _load(items, input_size, valid_max, str(root))


#: What to give instead of a file the tile-index reader cannot use.
TILE_INDEX_HINT = "give a tile index written by `marsice tile` (its label column filled in QGIS)"


def read_tile_labels(index: Path, label_field: str = "label") -> list[tuple[str, object]]:
    """(file, label) of the rows of a tile index's ``tiles`` layer that have both, in fid order.

    The reader of the index ``marsice tile`` writes; it belongs beside that writer and lives here until the
    tile export settles in its own module.
    """
    rows = read_layer(
        index,
        "tiles",
        ["file", label_field],
        f"file IS NOT NULL AND {quote(label_field)} IS NOT NULL",
        geometry=False,
        hint=TILE_INDEX_HINT,
    )
    return [(attrs["file"], attrs[label_field]) for _, attrs in rows]


def load_tile_index(
    index: Path, input_size: int, label_field: str = "label", valid_max: float | None = None
) -> LabelledChunks:
    """Labelled rows of a ``marsice tile`` index (layer ``tiles``); files are relative to the index."""
    rows = read_tile_labels(index, label_field)
    bad = sorted({r[1] for r in rows} - {0, 1})
    if bad:
        raise TrainingDataError(f"{index}: label values must be 0 or 1, found {bad}")
    items = [(index.parent / f, int(label)) for f, label in rows]
    absent = [str(p) for p, _ in items if not p.is_file()]
    if absent:
        raise TrainingDataError(f"{index}: {len(absent)} labelled chunk files are missing, e.g. {absent[0]}")
    if not items:
        raise TrainingDataError(
            f"{index}: no labelled chunks; set '{label_field}' to 1 (ice) or 0 (none) on some tiles in QGIS first"
        )
    return _load(items, input_size, valid_max, str(index))


def load_labelled(
    data: Path, input_size: int, label_field: str = "label", valid_max: float | None = None
) -> LabelledChunks:
    """Folders ``0/`` + ``1/`` or a labelled tile-index GeoPackage, chosen by what ``data`` is."""
    data = Path(data)
    if data.is_dir():
        return load_folders(data, input_size, valid_max)
    if data.suffix.lower() == ".gpkg" and data.is_file():
        return load_tile_index(data, input_size, label_field, valid_max)
    raise TrainingDataError(
        f"{data}: give a folder with 0/ and 1/ sub-folders of chunk images, or a tile index (.gpkg) from 'marsice tile'"
    )
