"""Refusing a product that cannot be read as an image, with what to do instead: the checks on an input.

:mod:`marsice_plugin.product` opens and reads products; the checks it runs on them live here, each a rule
with its reasons, so that the reading code stays about reading.

Refused on opening, before any pixel is decoded (each a :class:`ProductError`, exit 2):

* **Broken JPEG2000**: a file whose box lengths do not add up to its size, or whose codestream does not end
  with the end-of-codestream marker after its last tile-part (:mod:`marsice_plugin.jp2check`): a cut download.
* **Too large**: a side over :data:`MAX_SIDE_PX` px (so at most 40 Gpx). The largest product of the bundled
  catalogue (PSP_008585_2915_COLOR, 87 GB uncompressed: about 14.5 Gpx a band, a 40 km strip at 68°N lying
  diagonally in its polar stereographic frame, an estimated 120,000 px a side) fits inside; a raster that claims
  more (a VRT can claim 10⁶ × 10⁶) failed with a MemoryError in the middle of reading, since one band of rows
  spans the full width. A 4 Gpx limit would have refused real polar products.
* **A DTM given as the image** (:func:`dtm_evidence`): elevations are not brightness, and a score on them is
  noise; the message points to ``marsice terrain --dtm``.

While reading, any decoder error becomes a :class:`ProductError` naming the file and the rows, also the errors
GDAL's JPEG2000 worker threads report without failing the read (:mod:`marsice_plugin.gdal_errors`): those would
otherwise come back as zeros, which look like a no-data margin. A complete file with a real no-data margin reads
without any error and its margin chunks are skipped as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import gdal_errors
from .errors import CancelledError, LabelError, ProductError
from .labels import DTM_PRODUCT_ID, LENGTH_UNITS, read_label

#: Largest image side (px) MarsIce opens: HiRISE RDRs reach an estimated 120,000 px (see the module docstring).
MAX_SIDE_PX = 200_000

#: Float samples below this are ISIS/PDS special values (NULL, saturation: about -3.4e38), not data.
SPECIAL_FLOAT_BELOW = -1e30


def check_size(path: Path, width: int, height: int) -> None:
    """Refuse an image with a side over :data:`MAX_SIDE_PX` before anything is allocated for it."""
    if max(width, height) > MAX_SIDE_PX:
        raise ProductError(
            f"{path} claims {width}x{height} px, more than any HiRISE product (at most {MAX_SIDE_PX:,} px a side, "
            f"about {MAX_SIDE_PX**2 / 1e9:.0f} Gpx); check that the file describes the image you meant "
            "(a VRT or a label can claim any size)"
        )


def refuse_dtm(path: Path, evidence: str | None) -> None:
    """A DTM given where an image belongs is refused with where it should go instead."""
    if evidence:
        raise ProductError(
            f"{path} looks like a DTM (elevations), not an image: pass it to marsice terrain --dtm ({evidence})"
        )


def decode(
    read: Callable[[], np.ndarray], image_path: Path, height: int, first_row: int, end_row: int, level: int = 0
) -> np.ndarray:
    """Run one GDAL read; a decoder error is a :class:`ProductError` naming the file and the rows.

    Also the errors GDAL's JPEG2000 worker threads report without failing the read (they leave the tile as
    zeros, :mod:`marsice_plugin.gdal_errors`). ``first_row``/``end_row`` are full-resolution rows of an image
    ``height`` rows tall.
    """
    try:
        with gdal_errors.watch() as worker_errors:
            data = read()
    except CancelledError:  # a cancel is not a decoding failure
        raise
    except Exception as exc:
        raise _decode_error(image_path, height, first_row, end_row, level, str(exc.__cause__ or exc)) from exc
    if worker_errors:
        detail = "; ".join(list(dict.fromkeys(worker_errors))[:3])
        raise _decode_error(image_path, height, first_row, end_row, level, detail)
    return data


def _decode_error(image_path: Path, height: int, first_row: int, end_row: int, level: int, detail: str) -> ProductError:
    where = f" (JPEG2000 level {level})" if level else ""
    return ProductError(
        f"{image_path}: cannot decode pixels at rows {first_row}-{min(end_row, height) - 1}{where}: "
        f"{detail.strip()}. The image file may be truncated or corrupt: download it again"
    )


def dtm_evidence(path: Path, ds: Any) -> str | None:
    """Why a GDAL raster holds elevations (a DTM) rather than an image, or None.

    The rule, in order (the first that finds evidence decides; none found: an image):

    1. a PDS3 file with an attached label (a HiRISE DTM ``.IMG``): the label's keywords decide, as for a
       detached label (:meth:`~marsice_plugin.labels.ProductLabel.dtm_evidence`: a ``DTE..._`` product id, a DTM
       product type, or real-valued samples in metres);
    2. a HiRISE DTM id (``DTEEC_``, ``DTEPC_`` ...) as the file name or in the ``PRODUCT_ID`` metadata;
    3. a band unit that is a length (``m``, ``metre``, ``meters``, ``km``);
    4. for real-valued rasters only, the values, from up to nine 256 × 256 px samples spread over the image
       (NaN, the nodata value and ISIS special values below -1e30 left out): a value below -10 or above 100,000
       is an elevation or a planetary radius in metres. An image never holds one: I/F reflectance lies within
       about 0..1.5, and DNs (also stored as floats, e.g. the chunks ``marsice tile`` writes) are never negative
       and stay below 65,536.

    So a float32 I/F cube (ISIS, GeoTIFF) is an image, and a DTM whose metadata says nothing and whose heights
    all lie within -10..100,000 m is not recognised (it would be scored as brightness).
    """
    if _has_pds_label(path):
        try:
            evidence = read_label(path).dtm_evidence()
        except LabelError:
            evidence = None  # not a label MarsIce reads: the GDAL metadata below still applies
        if evidence:
            return evidence
    tags = {k.upper(): str(v).strip().strip('"') for k, v in ds.tags().items()}
    for name in (path.stem.upper(), tags.get("PRODUCT_ID", "").upper()):
        if DTM_PRODUCT_ID.match(name):
            return f"{name} is a HiRISE DTM id"
    for unit in ds.units or ():
        if unit and unit.strip().upper().rstrip(".") in LENGTH_UNITS:
            return f"its band unit is '{unit}'"
    if np.dtype(ds.dtypes[0]).kind != "f":
        return None
    low, high = _value_range(ds)
    if low is not None and low < -10.0:
        return f"it holds values down to {low:.6g}, below anything an image holds"
    if high is not None and high > 100_000.0:
        return f"it holds values up to {high:.6g}, a height or radius in metres rather than I/F or DNs"
    return None


def _has_pds_label(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return b"PDS_VERSION_ID" in handle.read(4096)
    except OSError:
        return False


def _value_range(ds: Any, samples: int = 3, size: int = 256) -> tuple[float | None, float | None]:
    """(min, max) of the valid values of band 1 in a grid of ``samples`` × ``samples`` windows of ``size`` px."""
    from rasterio.windows import Window

    low = high = None
    h, w = min(size, ds.height), min(size, ds.width)
    rows = sorted({round(i * (ds.height - h) / max(1, samples - 1)) for i in range(samples)})
    cols = sorted({round(j * (ds.width - w) / max(1, samples - 1)) for j in range(samples)})
    for r in rows:
        for c in cols:
            try:
                data = ds.read(1, window=Window(c, r, w, h))
            except CancelledError:
                raise
            except Exception:  # noqa: BLE001 - unreadable here is reported by the real read, with its rows
                continue
            valid = np.isfinite(data) & (data > SPECIAL_FLOAT_BELOW)
            if ds.nodata is not None:
                valid &= data != ds.nodata
            if valid.any():
                values = data[valid]
                lo, hi = float(values.min()), float(values.max())
                low = lo if low is None else min(low, lo)
                high = hi if high is None else max(high, hi)
    return low, high
