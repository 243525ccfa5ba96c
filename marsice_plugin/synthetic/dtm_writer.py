"""Write a scene's height field as a HiRISE DTM product: PDS3 ``.IMG``, 32-bit PC_REAL, attached label.

Real HiRISE DTMs (DTEEC/DTEPC) are map-projected like the RDRs (own CENTER_LATITUDE and local radius),
1-2 m/pixel, 32-bit little-endian IEEE floats (``SAMPLE_TYPE = PC_REAL``) with ``MISSING_CONSTANT =
16#FF7FFFFB#`` for no-data, and carry an attached label (the label occupies the first records of the
file and ``^IMAGE`` points at the first image record). The DTM is the scene's height field averaged
over ``factor`` × ``factor`` image pixels: at 2 m/pixel it does not resolve the 0.5-5 m boulders
that cast the paper's shadows, just as real DTMs do not.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from ..labels import MapProjection
from .pds3_text import HIRISE_IDENTIFICATION, ProjectionBlock, map_projection_object

#: The PC_REAL no-data value of HiRISE DTMs, as its bit pattern and as a float.
MISSING_CONSTANT_BITS = 0xFF7FFFFB
MISSING_CONSTANT = struct.unpack("<f", struct.pack("<I", MISSING_CONSTANT_BITS))[0]


def dtm_product_id(image_product_id: str) -> str:
    """DTEEC_<obs1>_<obs2>_A01: the image's observation paired with a notional stereo partner."""
    _, orbit, lat, _ = image_product_id.split("_")
    return f"DTEEC_{orbit}_{lat}_{int(orbit) + 1:06d}_{lat}_A01"


def write_dtm(
    out_dir: Path,
    image_product_id: str,
    height: np.ndarray,
    nodata: np.ndarray,
    projection: MapProjection,
    factor: int = 4,
) -> Path:
    """Average ``height`` (m) over ``factor`` px blocks and write ``DTEEC_..._A01.IMG``; returns its path."""
    rows, cols = height.shape[0] // factor, height.shape[1] // factor
    blocks = height[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor)
    dtm = blocks.mean(axis=(1, 3)).astype("<f4")
    empty = nodata[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor).all(axis=(1, 3))
    dtm[empty] = MISSING_CONSTANT

    p = projection
    scale = p.map_scale_m * factor
    # same upper-left corner as the image: x_ul = -(S + 0.5) * s for the image, so for the DTM
    sample_offset = (p.sample_projection_offset + 0.5) / factor - 0.5
    line_offset = (p.line_projection_offset + 0.5) / factor - 0.5
    pid = dtm_product_id(image_product_id)
    obs1 = "_".join(image_product_id.split("_")[:3])
    obs2 = "_".join(pid.split("_")[3:5])
    obs2 = f"ESP_{obs2}"
    valid = dtm[~empty]
    record_bytes = cols * 4
    label = _label(pid, obs1, obs2, p, scale, sample_offset, line_offset, rows, cols, valid, record_bytes)
    label_records = math.ceil(len(label.encode("ascii")) / record_bytes) + 1
    label = (
        label.replace("@FILE_RECORDS@", str(label_records + rows))
        .replace("@LABEL_RECORDS@", str(label_records))
        .replace("@IMAGE@", str(label_records + 1))
    )
    raw = label.encode("ascii")
    raw += b" " * (label_records * record_bytes - len(raw))
    path = Path(out_dir) / f"{pid}.IMG"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(tmp, "wb") as handle:
        handle.write(raw)
        handle.write(dtm.tobytes())
    os.replace(tmp, path)
    return path


def _label(
    pid: str,
    obs1: str,
    obs2: str,
    p: MapProjection,
    scale: float,
    sample_offset: float,
    line_offset: float,
    rows: int,
    cols: int,
    valid: np.ndarray,
    record_bytes: int,
) -> str:
    vmin = float(valid.min()) if valid.size else 0.0
    vmax = float(valid.max()) if valid.size else 0.0
    projection_object = map_projection_object(
        ProjectionBlock(
            p.projection_type,
            p.a_radius_m,
            p.center_latitude,
            p.center_longitude,
            rows,
            cols,
            scale,
            line_offset,
            sample_offset,
            p.westernmost_longitude,
            p.easternmost_longitude,
            p.minimum_latitude,
            p.maximum_latitude,
        )
    )
    return f"""PDS_VERSION_ID            = PDS3
RECORD_TYPE               = FIXED_LENGTH
RECORD_BYTES              = {record_bytes}
FILE_RECORDS              = @FILE_RECORDS@
LABEL_RECORDS             = @LABEL_RECORDS@
^IMAGE                    = @IMAGE@

/* Identification Information */
DATA_SET_ID               = "MRO-M-HIRISE-5-DTM-V1.0"
DATA_SET_NAME             = "MRO MARS HIGH RESOLUTION IMAGING SCIENCE EXPERIMENT DTM V1.0"
PRODUCER_INSTITUTION_NAME = "MARSICE SYNTHETIC SAMPLE"
PRODUCER_ID               = "MARSICE"
PRODUCT_ID                = "{pid}"
{HIRISE_IDENTIFICATION}
SOURCE_PRODUCT_ID         = ({obs1}, {obs2})
RATIONALE_DESC            = "Synthetic DTM of a MarsIce generated scene"
SOFTWARE_NAME             = "marsice synthetic DTM writer"

{projection_object}

OBJECT = IMAGE
 LINES                    = {rows}
 LINE_SAMPLES             = {cols}
 BANDS                    = 1
 OFFSET                   = 0.0
 SCALING_FACTOR           = 1.0
 SAMPLE_BITS              = 32
 SAMPLE_BIT_MASK          = 2#11111111111111111111111111111111#
 SAMPLE_TYPE              = PC_REAL
 MISSING_CONSTANT         = 16#FF7FFFFB#
 VALID_MINIMUM            = {vmin:.4f}
 VALID_MAXIMUM            = {vmax:.4f}
 UNIT                     = METER
 DESCRIPTION              = "Elevation above the areoid (synthetic relative heights)"
END_OBJECT = IMAGE
END
"""
