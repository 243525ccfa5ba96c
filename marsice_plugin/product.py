"""Open a product for reading: a HiRISE PDS3 label with its JPEG2000, or any GDAL raster in a Mars CRS.

A :class:`Product` hides the difference: it gives the image size, the affine transform, the Mars
CRS, the special pixel values and the viewing geometry, and reads windows as grey float arrays.
For a label, georeferencing always comes from the label (never from boxes inside the JP2), exactly
as GDAL's PDS driver does; for other rasters (GeoTIFF mosaics, ISIS cubes) it comes from GDAL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CRSError, ProductError
from .labels import ProductLabel, read_label
from .mars_crs import check_mars_crs, label_crs, label_transform

if TYPE_CHECKING:  # pragma: no cover
    import affine
    import pyproj

LABEL_SUFFIXES = (".lbl",)


@dataclass(frozen=True)
class ViewingGeometry:
    """Season and illumination of a product; None where the source does not say."""

    solar_longitude: float | None = None
    incidence_angle: float | None = None
    emission_angle: float | None = None
    sun_azimuth_from_north: float | None = None
    local_time: float | None = None


class Product:
    """A readable, georeferenced single-image product. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        path: Path,
        dataset: Any,
        transform: affine.Affine,
        crs: pyproj.CRS,
        product_id: str,
        label: ProductLabel | None,
        special_values: tuple[int, ...],
        viewing: ViewingGeometry,
    ):
        self.path = path
        self._ds = dataset
        self.transform = transform
        self.crs = crs
        self.product_id = product_id
        self.label = label
        self.special_values = special_values
        self.viewing = viewing
        self.width: int = dataset.width
        self.height: int = dataset.height
        self.band_count: int = dataset.count

    # -- geometry -------------------------------------------------------------------------------
    @property
    def scale_m(self) -> float:
        """Ground sample distance in metres per pixel (x direction)."""
        return math.hypot(self.transform.a, self.transform.d)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the product CRS."""
        t = self.transform
        xs = [t.c, t.c + t.a * self.width]
        ys = [t.f, t.f + t.e * self.height]
        return min(xs), min(ys), max(xs), max(ys)

    def center_lonlat(self) -> tuple[float, float]:
        """Planetocentric longitude (east, -180..180) and latitude of the image centre."""
        from .vectors import to_lonlat

        x, y = self.transform @ (self.width / 2, self.height / 2)
        lon, lat = to_lonlat(self.crs, [x], [y])
        return float(lon[0]), float(lat[0])

    # -- pixels ---------------------------------------------------------------------------------
    @property
    def valid_max(self) -> float:
        """Largest valid DN (1023 for 10-bit HiRISE data) used to normalise model input."""
        if self.label is not None:
            return float(2**self.label.valid_bits - 1)
        dtype = np.dtype(self._ds.dtypes[0])
        if dtype == np.uint8:
            return 255.0
        if dtype.kind in "ui":
            return float(np.iinfo(dtype).max)
        return 1.0

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """Read a window as float32 grey values (COLOR products: mean of their bands, as the paper did)."""
        from rasterio.windows import Window

        try:
            data = self._ds.read(window=Window(col_off, row_off, width, height), boundless=False)
        except Exception as exc:
            raise ProductError(
                f"{self.path}: cannot decode pixels at rows {row_off}-{row_off + height}: {exc}. "
                "The image file may be truncated or corrupt: download it again"
            ) from exc
        if data.shape[0] == 1:
            return data[0].astype(np.float32, copy=False)
        return data.astype(np.float32).mean(axis=0)

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> Product:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_image_file(label: ProductLabel) -> Path:
    """Find the label's image file beside it (case-insensitively: archives differ in case)."""
    if not label.image_file:
        raise ProductError(f"{label.path}: label names no image file (COMPRESSED_FILE FILE_NAME)")
    name = Path(label.image_file).name
    folder = label.path.parent
    candidate = folder / name
    if candidate.exists():
        return candidate
    lowered = name.lower()
    for entry in folder.iterdir():
        if entry.name.lower() == lowered:
            return entry
    raise ProductError(f"{label.path}: its image file {name} is not in {folder}; download the .JP2 next to the label")


def open_product(path: str | Path) -> Product:
    """Open a HiRISE label (``.LBL`` + image) or a GDAL raster in a Mars CRS."""
    path = Path(path)
    if not path.exists():
        raise ProductError(f"{path} does not exist")
    if path.suffix.lower() in LABEL_SUFFIXES:
        return _open_labelled(path)
    return _open_raster(path)


def _rasterio_open(path: Path, georeferenced: bool = True) -> Any:
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            if not georeferenced:  # a label's image: georeferencing comes from the label, not the JP2
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except Exception as exc:
        raise ProductError(f"{path}: GDAL cannot open it as a raster ({exc})") from exc


def _open_labelled(path: Path) -> Product:
    label = read_label(path)
    image_path = resolve_image_file(label)
    ds = _rasterio_open(image_path, georeferenced=False)
    if (ds.width, ds.height) != (label.samples, label.lines):
        ds.close()
        raise ProductError(
            f"{path}: label says {label.samples}x{label.lines} pixels but {image_path.name} has "
            f"{ds.width}x{ds.height}; the label and image do not belong together"
        )
    crs = label_crs(label)
    special = tuple(sorted(set(label.special_values.values())))
    viewing = ViewingGeometry(
        solar_longitude=label.solar_longitude,
        incidence_angle=label.incidence_angle,
        emission_angle=label.emission_angle,
        sun_azimuth_from_north=label.sun_azimuth_from_north,
        local_time=label.local_time,
    )
    return Product(path, ds, label_transform(label), crs, label.product_id, label, special, viewing)


def _open_raster(path: Path) -> Product:
    import pyproj

    ds = _rasterio_open(path)
    if ds.crs is None:
        ds.close()
        raise CRSError(f"{path} has no coordinate reference system; assign a Mars CRS (e.g. gdal_edit -a_srs)")
    crs = pyproj.CRS.from_wkt(ds.crs.to_wkt())
    try:
        check_mars_crs(crs, str(path))
    except CRSError:
        ds.close()
        raise
    if ds.transform.b or ds.transform.d:
        ds.close()
        raise ProductError(f"{path}: rotated rasters are not supported; warp it north-up first (gdalwarp)")
    nodata = ds.nodata
    special = (int(nodata),) if nodata is not None and float(nodata).is_integer() else ()
    tags = ds.tags()
    viewing = ViewingGeometry(
        solar_longitude=_tag_float(tags, "SOLAR_LONGITUDE"),
        incidence_angle=_tag_float(tags, "INCIDENCE_ANGLE"),
        sun_azimuth_from_north=_tag_float(tags, "SUN_AZIMUTH_FROM_NORTH"),
    )
    return Product(path, ds, ds.transform, crs, path.stem, None, special, viewing)


def _tag_float(tags: dict[str, str], key: str) -> float | None:
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return None
