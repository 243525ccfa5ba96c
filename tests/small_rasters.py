"""Helpers for the chunk reader and tile export tests: tiny georeferenced rasters and a read-recording dataset."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from affine import Affine

#: Equirectangular on the Mars sphere, as HiRISE RDR labels define it.
MARS_EQC = "+proj=eqc +lat_ts=-50 +lat_0=0 +lon_0=180 +x_0=0 +y_0=0 +R=3396190 +units=m +no_defs"
TRANSFORM = Affine(0.5, 0.0, -1000.0, 0.0, -0.5, -2_950_000.0)
HIRISE_SPECIAL = (0, 1, 2, 1022, 1023)
JP2_OPTIONS = {
    "REVERSIBLE": "YES",
    "QUALITY": "100",
    "NBITS": "10",
    "BLOCKXSIZE": "512",
    "BLOCKYSIZE": "512",
    "RESOLUTIONS": "4",
    "PROGRESSION": "RPCL",
    "YCC": "NO",
}


def write_raster(
    path: Path,
    data: np.ndarray,
    transform: Affine = TRANSFORM,
    driver: str = "GTiff",
    crs: str = MARS_EQC,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write ``data`` ((rows, cols) or (bands, rows, cols), uint16) in a Mars CRS (PROJ string) with nodata 0."""
    import rasterio
    from rasterio.crs import CRS

    if data.ndim == 2:
        data = data[None]
    extra = JP2_OPTIONS if driver == "JP2OpenJPEG" else {"tiled": True, "blockxsize": 256, "blockysize": 256}
    with rasterio.open(
        path,
        "w",
        driver=driver,
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=CRS.from_proj4(crs),
        transform=transform,
        nodata=0,
        **extra,
    ) as ds:
        ds.write(data)
        if tags:
            ds.update_tags(**tags)
    return path


def smooth_image(height: int, width: int, seed: int = 0, noise: float = 3.0) -> np.ndarray:
    """Smooth relief (400 ± 80 DN) with Gaussian noise, as uint16."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    relief = 400 + 60 * np.sin(xx / 41.0) * np.cos(yy / 67.0) + 20 * np.sin(yy / 13.0)
    return np.rint(relief + rng.normal(0, noise, (height, width))).clip(3, 1021).astype(np.uint16)


class RecordingDataset:
    """Wraps a rasterio dataset; records the window of every ``read`` (from any thread)."""

    def __init__(self, ds, fail: bool = False):
        self._ds = ds
        self._fail = fail
        self._lock = threading.Lock()
        self.windows: list = []

    def read(self, *args, window=None, **kwargs):
        with self._lock:
            self.windows.append(window)
        if self._fail:
            raise RuntimeError("simulated decoder failure")
        return self._ds.read(*args, window=window, **kwargs)

    def __getattr__(self, name):
        return getattr(self._ds, name)


def label_free_copy(product, folder: Path, tags: dict[str, str], dtype: str = "float32") -> Path:
    """A product's pixels (``product`` has ``label_path`` and ``product_id``) as a GeoTIFF without a label, named
    after the product, on the same grid and CRS, with metadata ``tags`` (what ``gdal_translate`` of an RDR gives)."""
    import rasterio
    from rasterio.crs import CRS

    from marsice_plugin.product import open_product

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{product.product_id}.tif"
    with open_product(product.label_path) as p:
        data = p.read(0, 0, p.height, p.width).astype(dtype)
        profile = dict(driver="GTiff", width=p.width, height=p.height, count=1, dtype=dtype, nodata=0)
        with rasterio.open(path, "w", crs=CRS.from_wkt(p.crs.to_wkt()), transform=p.transform, **profile) as ds:
            ds.write(data, 1)
            ds.update_tags(**tags)
    return path
