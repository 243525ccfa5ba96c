"""Open a product for reading: a HiRISE PDS3 label with its JPEG2000, or any GDAL raster in a Mars CRS.

A :class:`Product` hides the difference: it gives the image size, the affine transform, the Mars
CRS, the special pixel values and the viewing geometry, and reads windows as grey float arrays.

Reading paths, and why:

* :meth:`Product.read` — any window, float32 grey (for quick-looks and small reads).
* :meth:`Product.read_rows` — full-width bands of rows with their no-data and special-pixel masks, the
  reading unit of the chunk reader (:mod:`marsice_plugin.chunk_reader`): one decode per image row.
* Reduced resolution: a JPEG2000 file carries its own resolution levels (level ``l`` is the image
  reduced ``2**l`` times by the wavelet low-pass), which decode far faster than the full image.
  :meth:`Product.read_rows` with ``level=l`` reads them (GDAL's ``OVERVIEW_LEVEL``). Their
  georeferencing is *not* GDAL's overview convention: the low-pass sample ``n`` of a level is centred
  on full-resolution pixel ``f·n`` (``f = 2**l``), so the level's grid is shifted by ``(f - 1) / 2``
  source pixels up and left of the box convention (:meth:`Product.level_transform`; measured with a
  planted block: the box convention misplaces it by 0.5, 1.5 and 3.5 source pixels at f = 2, 4, 8).
* COLOR products become grey as the paper did: the mean of their bands; a pixel is no-data when
  every band is null and special when any band holds a special value (float rasters: NaN, ISIS NULL and their
  no-data are null, ISIS's other special pixels are special).
* Values are raw here; :attr:`Product.pixel_scale` says how the chunk reader brings them to the model's 10-bit DN
  scale (:mod:`marsice_plugin.normalisation`).
For a label, georeferencing always comes from the label (never from boxes inside the JP2), exactly
as GDAL's PDS driver does; for other rasters (GeoTIFF mosaics, ISIS cubes) it comes from GDAL.

A broken JPEG2000, an image too large to read or a DTM given as the image is refused on opening, before any
pixel is decoded, and a decoder error while reading becomes a :class:`ProductError` naming the file and the
rows: :mod:`marsice_plugin.product_checks` holds those rules and why.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CancelledError, CRSError, ProductError
from .jp2check import check_jpeg2000, is_jpeg2000
from .labels import ProductLabel, read_label, sun_azimuth_from_north
from .mars_crs import check_mars_crs, label_crs, label_transform
from .normalisation import (
    DN_MAX,
    ISIS_NULL_FLOAT,
    ISIS_SPECIAL_INT,
    SAMPLE_GRID,
    SAMPLE_REDUCED_SIDE,
    SAMPLE_WINDOW,
    PixelScale,
    product_scale,
    sample_windows,
    stretch_windows,
)
from .product_checks import SPECIAL_FLOAT_BELOW, check_size, decode, dtm_evidence, refuse_dtm

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
    #: where ``sun_azimuth_from_north`` came from: "label", "metadata", "catalogue" or "option" (--sun-azimuth)
    sun_source: str | None = None


def special_mask(data: np.ndarray, special_values: tuple[int, ...]) -> np.ndarray:
    """True where a pixel of a :meth:`Product.read` window holds one of the special values (null, saturation)."""
    isis = (data < SPECIAL_FLOAT_BELOW) & (data != np.float32(ISIS_NULL_FLOAT))  # ISIS LRS, LIS, HIS, HRS
    if not special_values:
        return isis
    return isis | np.isin(data, np.asarray(special_values, dtype=data.dtype))


def nodata_mask(data: np.ndarray, special_values: tuple[int, ...]) -> np.ndarray:
    """True for no-data: the null value (the first special value, 0 for HiRISE), ISIS NULL or non-finite pixels."""
    null = min(special_values) if special_values else None
    mask = ~np.isfinite(data) | (data == np.float32(ISIS_NULL_FLOAT))
    if null is not None:
        mask |= data == null
    return mask


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
        float_nodata: float | None = None,
    ):
        self.path = path
        #: the file whose pixels are read (the JP2 beside a label, or the raster itself)
        self.image_path = Path(getattr(dataset, "name", path))
        self._ds = dataset
        self.transform = transform
        self.crs = crs
        self.product_id = product_id
        self.label = label
        self.special_values = special_values
        self.viewing = viewing
        #: a float raster's own no-data value (NaN, ISIS NULL and the other ISIS special pixels are always masked)
        self.float_nodata = float_nodata
        self._pixel_scale: PixelScale | None = None
        self.width: int = dataset.width
        self.height: int = dataset.height
        self.band_count: int = dataset.count
        self._levels: dict[int, Any] = {}

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

    @functools.cached_property
    def grid_north(self) -> float:
        """Where true north points in the image at its centre: degrees clockwise from "up" (the first row).

        0 for equirectangular products, whose grid is north-up. Not for polar stereographic ones (every HiRISE RDR
        poleward of ±65°, a tenth of those between 40° and 70°S): there north turns with longitude, by 93° at the
        median over the RDR index (its NORTH_AZIMUTH - 270). Measured from the product's own CRS
        (:func:`marsice_plugin.terrain.derivatives.grid_convergence`), so a label-free GeoTIFF gets it too; values
        under 1e-6° are 0, so a north-up grid turns nothing.
        """
        from .terrain.derivatives import grid_convergence

        x, y = self.transform @ (self.width / 2, self.height / 2)
        gamma = float(grid_convergence(self.crs, np.array([x]), np.array([y]))[0])
        return 0.0 if abs(gamma) < 1e-6 else gamma % 360.0

    @property
    def image_sun_azimuth(self) -> float | None:
        """The sun's direction in the image, degrees clockwise from "up": its azimuth from north turned by
        :attr:`grid_north` (what a label's SUB_SOLAR_AZIMUTH - 270 says); None while the sun is unknown.

        Why: whatever turns pixels by the sun (the second stage's crops) works in the image's rows and columns;
        on a polar stereographic product the azimuth from north alone points anywhere.
        """
        sun = self.viewing.sun_azimuth_from_north
        return None if sun is None else self.grid_azimuth(sun)

    def grid_azimuth(self, azimuth_from_north: float) -> float:
        """A direction given clockwise from north, as degrees clockwise from "up" in this product's grid: turned by
        :attr:`grid_north`, returned as it is on a north-up grid. One turn for the crops' sun
        (:attr:`image_sun_azimuth`) and terrain's shadows, whose sun may come from an option instead."""
        north = self.grid_north
        return azimuth_from_north if north == 0.0 else (azimuth_from_north + north) % 360.0

    def center_lonlat(self) -> tuple[float, float]:
        """Planetocentric longitude (east, -180..180) and latitude of the image centre."""
        from .vectors import to_lonlat

        x, y = self.transform @ (self.width / 2, self.height / 2)
        lon, lat = to_lonlat(self.crs, [x], [y])
        return float(lon[0]), float(lat[0])

    # -- pixels ---------------------------------------------------------------------------------
    @property
    def valid_max(self) -> float:
        """The chunk value that maps to 1.0 in the model input: 1023, as chunks hold 10-bit DNs (``pixel_scale``)."""
        return DN_MAX

    @property
    def nbits(self) -> int | None:
        """GDAL's ``NBITS`` (a 10-bit JPEG2000, a GeoTIFF written with NBITS=10), None when the type is full."""
        try:
            value = int(self._ds.tags(1, ns="IMAGE_STRUCTURE").get("NBITS", 0))
        except (TypeError, ValueError):
            return None
        return value if 0 < value < 8 * np.dtype(self._ds.dtypes[0]).itemsize else None

    @property
    def pixel_scale(self) -> PixelScale:
        """Raw values → 10-bit DNs from the label, NBITS or the valid pixels (read once; may refuse: normalisation)."""
        if self._pixel_scale is None:
            values, sampled = self.pixel_sample()
            bits = self.label.valid_bits if self.label is not None else None
            self._pixel_scale = product_scale(self.path, values, self._ds.dtypes[0], bits, self.nbits, sampled)
        return self._pixel_scale

    def pixel_sample(self) -> tuple[np.ndarray, int]:
        """Valid grey values of a grid of full-resolution windows across the image, and how many pixels were read.

        A float raster's percentiles set its stretch, and a sample of small dense windows strays where bright
        patches cluster: up to :data:`~marsice_plugin.normalisation.STRETCH_WHOLE_PIXELS` it gives every pixel,
        beyond that larger windows read at every few pixels (nearest: values, not averages).

        Full resolution, so every container of a scene gives the same pixels; when no window holds a valid pixel, a
        reduced read of the whole image (nearest neighbour: values, not averages) looks again before calling it
        empty. A handle of its own keeps the chunk reader's stream at one decode per row. A label gives the scale, so
        the sample need only show valid, varied pixels: its coarsest JPEG2000 level does, for a fraction of the work.
        """
        from rasterio.enums import Resampling

        level = self.level_count() if self.label is not None else 0
        values, sampled = [], 0
        with _rasterio_open(self.image_path, georeferenced=False, level=level) as ds:
            floating = np.dtype(ds.dtypes[0]).kind == "f"  # its percentiles set the stretch: every pixel or spread
            if floating:
                windows, step = stretch_windows(ds.width, ds.height)
            else:
                windows, step = sample_windows(ds.width, ds.height, SAMPLE_GRID, SAMPLE_WINDOW), 1
            for window in windows:
                r = int(window.row_off) << level
                read = functools.partial(ds.read, window=window)
                if step > 1:  # every step-th pixel of every step-th row
                    shape = (ds.count, -(-int(window.height) // step), -(-int(window.width) // step))
                    read = functools.partial(read, out_shape=shape, resampling=Resampling.nearest)
                data = self._decode(read, r, r + (int(window.height) << level))
                grey, nodata, special = self._grey_and_masks(data)
                values.append(grey[~(nodata | special)])
                sampled += grey.size
            found = np.concatenate(values)
            whole = sampled >= ds.width * ds.height  # a small image: the windows held every pixel
            if not whole and (found.size == 0 or found.min() == found.max()):  # look across it all before refusing
                f = max(1, math.ceil(max(ds.width, ds.height) / SAMPLE_REDUCED_SIDE))
                shape = (ds.count, -(-ds.height // f), -(-ds.width // f))
                data = self._decode(lambda: ds.read(out_shape=shape, resampling=Resampling.nearest), 0, self.height)
                grey, nodata, special = self._grey_and_masks(data)
                found, sampled = np.concatenate([found, grey[~(nodata | special)]]), sampled + grey.size
        return found.astype(np.float64), sampled

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """Read a window as float32 grey values (COLOR products: mean of their bands, as the paper did)."""
        from rasterio.windows import Window

        window = Window(col_off, row_off, width, height)
        data = self._decode(lambda: self._ds.read(window=window, boundless=False), row_off, row_off + height)
        if data.shape[0] == 1:
            return data[0].astype(np.float32, copy=False)
        return data.astype(np.float32).mean(axis=0)

    @property
    def null_value(self) -> int | None:
        """The no-data value: the lowest special value (CORE_NULL, 0 for HiRISE) or the raster's nodata."""
        return min(self.special_values) if self.special_values else None

    @property
    def block_height(self) -> int:
        """Height of the image's storage blocks (JPEG2000 tiles, GeoTIFF tiles or strips)."""
        return int(self._ds.block_shapes[0][0])

    def level_count(self) -> int:
        """Number of reduced JPEG2000 resolution levels GDAL exposes (0 for other formats).

        Only JPEG2000 levels are used: their pixels are exact wavelet low-pass values with a known
        geometry, whereas a GeoTIFF's overviews may have been built by any resampling.
        """
        if self._ds.driver != "JP2OpenJPEG":
            return 0
        factors = self._ds.overviews(1)
        count = 0
        for factor in factors:
            if factor != 2 ** (count + 1):
                break
            count += 1
        return count

    def level_transform(self, level: int) -> affine.Affine:
        """Affine transform of JPEG2000 resolution level ``level`` (pixel-corner, see the module docstring)."""
        from affine import Affine

        f = 2**level
        shift = 0.5 - f / 2.0
        return self.transform @ Affine.translation(shift, shift) @ Affine.scale(f)

    def level_shape(self, level: int) -> tuple[int, int]:
        """(height, width) of resolution level ``level``: the full size divided by ``2**level``, rounded up."""
        f = 2**level
        return -(-self.height // f), -(-self.width // f)

    def _level_dataset(self, level: int) -> Any:
        if level == 0:
            return self._ds
        if level not in self._levels:
            import warnings

            import rasterio
            from rasterio.errors import NotGeoreferencedWarning

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    self._levels[level] = rasterio.open(self._ds.name, OVERVIEW_LEVEL=str(level - 1))
            except CancelledError:  # a cancel is not a decoding failure
                raise
            except Exception as exc:
                raise ProductError(
                    f"{self.path}: cannot open JPEG2000 resolution level {level} ({exc}); "
                    "read at full resolution (no --scale) instead"
                ) from exc
        return self._levels[level]

    def read_rows(self, row_off: int, height: int, level: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Full-width rows of the image (or of resolution level ``level``) as grey + masks.

        Returns ``(grey, nodata, special)``: float32 grey values (the mean of the bands for COLOR),
        True where a pixel is no-data (null in every band, or not finite), and True where it holds a
        special value (in any band) without being no-data. 10-bit DNs are exact in float32.
        """
        from rasterio.windows import Window

        ds = self._level_dataset(level)
        window = Window(0, row_off, ds.width, height)
        f = 2**level
        data = self._decode(lambda: ds.read(window=window), row_off * f, (row_off + height) * f, level)
        return self._grey_and_masks(data)

    def _decode(self, read: Callable[[], np.ndarray], first_row: int, end_row: int, level: int = 0) -> np.ndarray:
        return decode(read, self.image_path, self.height, first_row, end_row, level)  # errors: product_checks.decode

    def _grey_and_masks(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        null = self.null_value
        integer = data.dtype.kind in "ui"
        values = [v for v in self.special_values if v != null]
        if integer:  # a value the data type cannot hold cannot occur
            info = np.iinfo(data.dtype)
            values = [v for v in values if info.min <= v <= info.max]
        nodata = np.ones(data.shape[1:], dtype=bool)
        special = np.zeros(data.shape[1:], dtype=bool)
        for band in data:
            band_null = band == null if null is not None else np.zeros(band.shape, dtype=bool)
            if not integer:  # NaN/inf, the raster's no-data, ISIS NULL; ISIS's other special pixels are saturation
                band_null |= ~np.isfinite(band) | (band == np.float32(ISIS_NULL_FLOAT))
                if self.float_nodata is not None:
                    band_null |= band == band.dtype.type(self.float_nodata)
                special |= (band < SPECIAL_FLOAT_BELOW) & ~band_null
            nodata &= band_null
            if values:
                special |= np.isin(band, np.asarray(values, dtype=band.dtype), kind="table" if integer else None)
        special &= ~nodata
        if data.shape[0] == 1:
            grey = data[0].astype(np.float32, copy=False)
        else:
            grey = data.sum(axis=0, dtype=np.float32) / np.float32(data.shape[0])
        return grey, nodata, special

    def read_reduced(self, out_height: int, out_width: int) -> np.ndarray:
        """The whole image averaged down to ``out_height`` × ``out_width`` (all bands), for pictures.

        GDAL serves it from the JPEG2000 resolution levels, so a quick-look decodes a fraction of the pixels.
        """
        from rasterio.enums import Resampling

        shape = (self._ds.count, out_height, out_width)
        return self._decode(lambda: self._ds.read(out_shape=shape, resampling=Resampling.average), 0, self.height)

    def close(self) -> None:
        for ds in self._levels.values():
            ds.close()
        self._levels.clear()
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


def _rasterio_open(path: Path, georeferenced: bool = True, level: int = 0) -> Any:
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            if not georeferenced:  # a label's image: georeferencing comes from the label, not the JP2
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path, **({"OVERVIEW_LEVEL": str(level - 1)} if level else {}))
    except CancelledError:  # a cancel is not a decoding failure
        raise
    except Exception as exc:
        raise ProductError(f"{path}: GDAL cannot open it as a raster ({exc})") from exc


def _open_labelled(path: Path) -> Product:
    label = read_label(path)
    refuse_dtm(path, label.dtm_evidence())
    check_size(path, label.samples, label.lines)
    image_path = resolve_image_file(label)
    if is_jpeg2000(image_path):
        check_jpeg2000(image_path)
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
        sun_source="label" if label.sun_azimuth_from_north is not None else None,
    )
    return Product(path, ds, label_transform(label), crs, label.product_id, label, special, viewing)


def _open_raster(path: Path) -> Product:
    import pyproj

    if is_jpeg2000(path):
        check_jpeg2000(path)
    ds = _rasterio_open(path)
    try:
        check_size(path, ds.width, ds.height)
        refuse_dtm(path, dtm_evidence(path, ds))
    except BaseException:
        ds.close()
        raise
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
    if crs.is_geographic:  # pixel sizes in degrees: every scale in metres (crops, areas, the domain check) is off
        ds.close()
        raise CRSError(
            f"{path} is in a geographic Mars CRS (pixel size in degrees); MarsIce reads map-projected products in "
            "metres, as HiRISE RDRs are: reproject it to a projected Mars CRS (gdalwarp -t_srs with an "
            "equirectangular or polar stereographic Mars projection)"
        )
    nodata = ds.nodata
    floating = np.dtype(ds.dtypes[0]).kind == "f"
    special = (int(nodata),) if nodata is not None and not floating and float(nodata).is_integer() else ()
    if ds.driver == "ISIS3" and ds.dtypes[0] in ISIS_SPECIAL_INT:  # the cube's NULL and saturation values
        null, saturation = ISIS_SPECIAL_INT[ds.dtypes[0]]
        special = tuple(sorted({*(special or (null,)), *saturation}))
    float_nodata = float(nodata) if floating and nodata is not None and not math.isnan(nodata) else None
    tags = ds.tags()
    sun = _tag_sun(tags)
    viewing = ViewingGeometry(
        solar_longitude=_tag_float(tags, "SOLAR_LONGITUDE"),
        incidence_angle=_tag_float(tags, "INCIDENCE_ANGLE"),
        sun_azimuth_from_north=sun,
        sun_source="metadata" if sun is not None else None,
    )
    return Product(path, ds, ds.transform, crs, path.stem, None, special, viewing, float_nodata)


def _tag_sun(tags: dict[str, str]) -> float | None:
    """The sun azimuth from north of a raster's metadata: ``SUN_AZIMUTH_FROM_NORTH``, else the label's own pair
    ``SUB_SOLAR_AZIMUTH`` and ``NORTH_AZIMUTH`` (both clockwise from the image's right-edge axis) where a tool
    copied them into the metadata: (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360."""
    given = _tag_float(tags, "SUN_AZIMUTH_FROM_NORTH")
    if given is not None:
        return given
    return sun_azimuth_from_north(_tag_float(tags, "SUB_SOLAR_AZIMUTH"), _tag_float(tags, "NORTH_AZIMUTH"))


def _tag_float(tags: dict[str, str], key: str) -> float | None:
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return None
