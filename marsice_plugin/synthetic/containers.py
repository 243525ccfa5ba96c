"""One generated scene in the six containers a HiRISE product reaches a user in, for the normalisation checks.

The same DNs as the JPEG2000 with its PDS3 label, as a uint16 GeoTIFF with and without ``NBITS=10``, as 8-bit
(DN / 4), as 16-bit full range (DN × 64) and as float32 I/F (DN × SCALING_FACTOR + OFFSET) with ISIS special
pixels: what ``gdal_translate`` and ISIS exports give. Detection must score them alike (issue: pixel values from
the data, not the container); the test suite and ``bench/real_pixels.py`` both write them with this function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..normalisation import ISIS_NULL_FLOAT

#: ISIS 32-bit saturation values (LRS, LIS, HIS, HRS) standing in for the label's special DNs 1, 2, 1022, 1023.
ISIS_SATURATION = {
    1: -3.4028228579130005e38,
    2: -3.4028230607370965e38,
    1022: -3.4028232635611926e38,
    1023: -3.4028234663852886e38,
}

#: The containers, the labelled JPEG2000 first.
CONTAINERS = ("jp2_label", "uint16_nbits10", "uint16", "uint8", "uint16_full_range", "float32_iof_isis")


def write_containers(sample: Any, out: Path) -> dict[str, Path]:
    """Write ``sample``'s scene (a ``write_sample_product`` result) in the five GeoTIFF containers into ``out``.

    Returns every container's path by name, ``jp2_label`` being the sample's own label. The GeoTIFFs carry the
    product's CRS and transform, no-data 0 for the integer ones; the float one marks no-data with ISIS NULL only.
    """
    import rasterio
    from rasterio.crs import CRS

    from ..product import open_product

    with open_product(sample.label_path) as product:
        crs, transform = CRS.from_wkt(product.crs.to_wkt()), product.transform
    dn = sample.scene.dn
    iof = (dn * sample.scene.scaling_factor + sample.scene.offset).astype(np.float32)
    for value, special in ISIS_SATURATION.items():
        iof[dn == value] = special
    iof[dn == 0] = ISIS_NULL_FLOAT
    copies = {
        "uint16_nbits10": (dn, {"nodata": 0, "NBITS": 10}),
        "uint16": (dn, {"nodata": 0}),
        "uint8": (np.clip(np.rint(dn / 4.0), 0, 255).astype(np.uint8), {"nodata": 0}),
        "uint16_full_range": ((dn.astype(np.uint32) * 64).astype(np.uint16), {"nodata": 0}),
        "float32_iof_isis": (iof, {}),  # no nodata tag: ISIS NULL is no-data by itself
    }
    paths = {"jp2_label": Path(sample.label_path)}
    for name, (data, options) in copies.items():
        paths[name] = Path(out) / f"{name}.tif"
        profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype)
        with rasterio.open(paths[name], "w", crs=crs, transform=transform, tiled=True, **profile, **options) as ds:
            ds.write(data, 1)
    return paths
