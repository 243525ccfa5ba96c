"""Write a rendered scene as a HiRISE-like RDR product in the real format, with its truth.

Files written for product ``ID`` (all beside each other, as in the PDS archive):

* ``ID.JP2``: 10-bit **lossless** JPEG2000 (JP2OpenJPEG, REVERSIBLE=YES, QUALITY=100, NBITS=10,
  1024-px tiles). GDAL's default is lossy and would smear the special values 0/1/2/1022/1023.
* ``ID.LBL``: a detached PDS3 label with the structure and keywords of a real RED RDR label
  (IMAGE_MAP_PROJECTION, TIME_PARAMETERS, INSTRUMENT_SETTING_PARAMETERS, VIEWING_PARAMETERS,
  COMPRESSED_FILE, UNCOMPRESSED_FILE/IMAGE with the special values).
* ``ID_truth.gpkg``: the planted ice patches as polygons (layer ``ice_truth``) in the product CRS.

Geometry follows the real labels: an EQUIRECTANGULAR product's CENTER_LATITUDE is the image latitude
rounded toward the equator to a multiple of 5° (15.0 for an image at 15.2-15.8°N in the real RED
label), CENTER_LONGITUDE 180, and the radii hold the local radius of the Mars ellipsoid at
CENTER_LATITUDE. A POLAR STEREOGRAPHIC product (as HiRISE makes poleward of ±65°) is centred on the
pole with CENTER_LONGITUDE 0 and the local radius at the image's own latitude (an assumption: no real
polar RDR label is at hand). On such a grid north is not up but turned by the grid convergence at the image
centre, as in the real RDR index's polar rows (NORTH_AZIMUTH 35.7 for PSP_008585_2915 at 234°E, 68°N): the label's
NORTH_AZIMUTH says so, and the scene is lit from the sun's direction in the image, so that the sun's azimuth from
north is ``SceneConfig.sun_azimuth`` on either grid.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyproj

from ..mars_crs import local_radius
from .pds3_text import HIRISE_IDENTIFICATION, ProjectionBlock, map_projection_object
from .scene import Scene, SceneConfig, render

JP2_OPTIONS = {
    "REVERSIBLE": "YES",
    "QUALITY": "100",
    "NBITS": "10",
    "BLOCKXSIZE": "1024",
    "BLOCKYSIZE": "1024",
    "RESOLUTIONS": "4",
    "PROGRESSION": "RPCL",
    "YCC": "NO",
}


@dataclass(frozen=True)
class ProductGeometry:
    """Where a sample product lies and how it was seen."""

    center_latitude: float = -50.0
    center_longitude: float = 30.0  # east, 0-360
    solar_longitude: float = 170.0
    local_time: float = 15.0
    emission_angle: float = 4.0
    start_time: dt.datetime = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    projection: str = "EQUIRECTANGULAR"  # or "POLAR STEREOGRAPHIC"


@dataclass(frozen=True)
class SampleProduct:
    """Paths and truth of a written sample product."""

    product_id: str
    label_path: Path
    image_path: Path
    truth_path: Path
    scene: Scene
    dtm_path: Path | None = None


def product_id_for(orbit: int, latitude: float) -> str:
    """HiRISE-style id: phase, orbit and the target latitude code (1800 + 10 × latitude)."""
    return f"ESP_{orbit:06d}_{round(1800 + 10 * latitude):04d}_RED"


def projection_center_latitude(latitude: float) -> float:
    """Standard parallel as real RDR labels choose it: rounded toward the equator to 5°."""
    return math.copysign(5.0 * math.floor(abs(latitude) / 5.0), latitude)


def write_sample_product(
    out_dir: str | Path,
    config: SceneConfig | None = None,
    geometry: ProductGeometry | None = None,
    orbit: int | None = None,
    dtm_factor: int | None = None,
) -> SampleProduct:
    """Render a scene and write it as ``ID.JP2`` + ``ID.LBL`` + ``ID_truth.gpkg`` in ``out_dir``.

    With ``dtm_factor`` (4 gives a 2 m/pixel DTM beside a 0.5 m/pixel image) a HiRISE-style DTM
    ``DTEEC_..._A01.IMG`` of the scene's height field is written too.
    """
    config = config or SceneConfig()
    geometry = geometry or ProductGeometry()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    orbit = orbit if orbit is not None else 90000 + config.seed
    pid = product_id_for(orbit, geometry.center_latitude)

    if geometry.projection == "POLAR STEREOGRAPHIC":
        lat_0, lon_0 = math.copysign(90.0, geometry.center_latitude), 0.0
        radius = local_radius(geometry.center_latitude)
        proj = f"+proj=stere +lat_0={lat_0} +lat_ts={lat_0} +lon_0={lon_0} +x_0=0 +y_0=0 +R={radius} +units=m"
    elif geometry.projection == "EQUIRECTANGULAR":
        lat_0, lon_0 = projection_center_latitude(geometry.center_latitude), 180.0
        radius = local_radius(lat_0)
        proj = f"+proj=eqc +lat_ts={lat_0} +lat_0=0 +lon_0=180 +x_0=0 +y_0=0 +R={radius} +units=m"
    else:
        raise ValueError(f"unsupported projection {geometry.projection}")
    s = config.scale_m
    x_center, y_center = pyproj.Transformer.from_crs(
        pyproj.CRS.from_proj4(f"+proj=longlat +R={radius} +no_defs +type=crs"),
        pyproj.CRS.from_proj4(proj),
        always_xy=True,
    ).transform(geometry.center_longitude, geometry.center_latitude)
    grid_north = 0.0  # north-up: the scene is lit by the azimuth from north as it is
    if geometry.projection == "POLAR STEREOGRAPHIC":  # north turns with longitude: light the scene in image terms
        from ..terrain.derivatives import grid_convergence

        grid_north = float(grid_convergence(proj, np.array([x_center]), np.array([y_center]))[0]) % 360.0
    lit = replace(config, sun_azimuth=(config.sun_azimuth + grid_north) % 360.0) if grid_north else config
    scene = render(lit)
    x_ul = math.floor((x_center - config.width * s / 2) / s) * s
    y_ul = math.floor((y_center + config.height * s / 2) / s) * s
    sample_offset = -x_ul / s - 0.5
    line_offset = y_ul / s - 0.5

    image_path = out_dir / f"{pid}.JP2"
    label_path = out_dir / f"{pid}.LBL"
    truth_path = out_dir / f"{pid}_truth.gpkg"
    extent = _lonlat_extent(proj, radius, x_ul, y_ul, config.width * s, config.height * s)
    label_text = _label_text(
        pid, config, geometry, scene, (lat_0, lon_0), radius, sample_offset, line_offset, extent, grid_north
    )

    from ..labels import parse_label_text
    from ..mars_crs import label_crs, label_transform

    label = parse_label_text(label_text, label_path)
    crs, transform = label_crs(label), label_transform(label)
    write_jp2(image_path, scene.dn, crs, transform)
    label_path.write_text(label_text, encoding="ascii")
    _write_truth(truth_path, scene, crs, transform, pid)
    dtm_path = None
    if dtm_factor:
        from .dtm_writer import write_dtm

        dtm_path = write_dtm(out_dir, pid, scene.height, scene.nodata, label.projection, dtm_factor)
    return SampleProduct(pid, label_path, image_path, truth_path, scene, dtm_path)


def write_jp2(path: Path, dn: np.ndarray, crs: Any = None, transform: Any = None) -> None:
    """Write 10-bit DNs as the products are written (``JP2_OPTIONS``), atomically.

    Products pass their Mars CRS and transform; training chunks (``training_data.decode_level``) pass
    neither: they go through this same encoder so the wavelet levels they are trained on are the ones
    detect decodes from a product.
    """
    import rasterio
    from rasterio.crs import CRS

    georef = {} if crs is None else {"crs": CRS.from_wkt(crs.to_wkt()), "transform": transform}
    tmp = path.with_name(path.name + ".partial")
    with rasterio.open(
        tmp,
        "w",
        driver="JP2OpenJPEG",
        width=dn.shape[1],
        height=dn.shape[0],
        count=1,
        dtype="uint16",
        **georef,
        **JP2_OPTIONS,
    ) as ds:
        ds.write(dn.astype(np.uint16, copy=False), 1)
    tmp.replace(path)
    aux = tmp.with_name(tmp.name + ".aux.xml")
    aux.unlink(missing_ok=True)


#: Attribute columns of the truth file's ``chunk_truth`` layer (the paper's 1024 px chunk grid).
CHUNK_TRUTH_FIELDS_SPEC = (
    ("product_id", str),
    ("chunk_row", int),
    ("chunk_col", int),
    ("ice_pixels", int),
    ("ice_m2", float),
    ("label", int),
    ("dust_pixels", int),
    ("hot_pixels", int),
    ("nodata_fraction", float),
)


def _write_truth(path: Path, scene: Scene, crs, transform, pid: str, chunk_size: int = 1024) -> None:
    """Ice truth polygons (pixel-exact outlines of the truth mask) and a per-chunk label table.

    ``chunk_truth`` holds one footprint per chunk of the paper's grid (no overlap) with the planted ice,
    dust and hot-pixel counts and ``label`` = 1 when the chunk holds at least 16 ice pixels (the rule of
    :func:`marsice_plugin.truth.chunk_truth`).
    """
    import shapely
    from rasterio import features

    from ..gpkg import Field, write_new
    from ..grid import ChunkGrid
    from ..truth import chunk_truth

    fields = [Field("product_id", str), Field("kind", str), Field("area_m2", float)]
    polys = [
        shapely.geometry.shape(geom)
        for geom, value in features.shapes(scene.ice.astype(np.uint8), mask=scene.ice, transform=transform)
        if value == 1
    ]
    rows = [(p, {"product_id": pid, "kind": "ice", "area_m2": p.area}) for p in polys]
    grid = ChunkGrid(scene.dn.shape[1], scene.dn.shape[0], chunk_size, 0)
    cells = [_Cell(i, j, w) for i, j, w in grid]
    labels = chunk_truth(scene.ice, cells)
    pixel_m2 = abs(transform.a * transform.e)
    chunk_fields = [Field(name, kind) for name, kind in CHUNK_TRUTH_FIELDS_SPEC]
    chunk_rows = []
    for c in cells:
        r, q = c.window.slices
        footprint = shapely.box(
            *(transform @ (c.window.col_off, c.window.row_off + c.window.height)),
            *(transform @ (c.window.col_off + c.window.width, c.window.row_off)),
        )
        ice = int(scene.ice[r, q].sum())
        chunk_rows.append(
            (
                footprint,
                {
                    "product_id": pid,
                    "chunk_row": c.chunk_row,
                    "chunk_col": c.chunk_col,
                    "ice_pixels": ice,
                    "ice_m2": ice * pixel_m2,
                    "label": int(labels[(c.chunk_row, c.chunk_col)]),
                    "dust_pixels": int(scene.dust[r, q].sum()),
                    "hot_pixels": int(scene.hot[r, q].sum()),
                    "nodata_fraction": float(scene.nodata[r, q].mean()),
                },
            )
        )

    def build(gpkg) -> None:
        srs = gpkg.add_srs(crs, name=f"{pid} (from label)")
        gpkg.create_layer("ice_truth", fields, "POLYGON", srs, "planted ice patches (truth)")
        gpkg.insert("ice_truth", fields, rows)
        gpkg.create_layer("chunk_truth", chunk_fields, "POLYGON", srs, "per-chunk truth labels (1024 px grid)")
        gpkg.insert("chunk_truth", chunk_fields, chunk_rows)

    write_new(path, build)


@dataclass(frozen=True)
class _Cell:
    chunk_row: int
    chunk_col: int
    window: object


def _lonlat_extent(proj: str, radius: float, x_ul: float, y_ul: float, width_m: float, height_m: float) -> tuple:
    """(west, east, south, north) of the image outline, from 64 points per edge."""
    t = np.linspace(0.0, 1.0, 64)
    xs = np.concatenate([x_ul + t * width_m, np.full(64, x_ul + width_m), x_ul + t * width_m, np.full(64, x_ul)])
    ys = np.concatenate([np.full(64, y_ul), y_ul - t * height_m, np.full(64, y_ul - height_m), y_ul - t * height_m])
    lon, lat = pyproj.Transformer.from_crs(
        pyproj.CRS.from_proj4(proj),
        pyproj.CRS.from_proj4(f"+proj=longlat +R={radius} +no_defs +type=crs"),
        always_xy=True,
    ).transform(xs, ys)
    lon = np.mod(lon, 360.0)
    return float(lon.min()), float(lon.max()), float(lat.min()), float(lat.max())


def _label_text(
    pid: str,
    config: SceneConfig,
    g: ProductGeometry,
    scene: Scene,
    centre: tuple[float, float],
    radius: float,
    sample_offset: float,
    line_offset: float,
    extent: tuple[float, float, float, float],
    grid_north: float = 0.0,
) -> str:
    """The label; ``grid_north``: where north points in the image (degrees clockwise from up), 0 on a north-up grid.
    Both azimuths are clockwise from the image's right-edge axis, as in real labels, so the sun's azimuth from north
    (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) is ``config.sun_azimuth`` on any grid."""
    s = config.scale_m
    lines, samples = config.height, config.width
    west, east, south, north = extent
    sub_solar_azimuth = (config.sun_azimuth + grid_north + 270.0) % 360.0
    north_azimuth = (270.0 + grid_north) % 360.0
    binning = {0.25: 1, 0.5: 2, 1.0: 4}.get(s, 2)
    bins = ", ".join([str(binning)] * 10 + ["-9998"] * 4)
    obs = pid.rsplit("_", 1)[0]
    start = g.start_time
    stop = start + dt.timedelta(seconds=lines * 1e-4 * binning)
    ts = "%Y-%m-%dT%H:%M:%S.%f"
    projection_object = map_projection_object(
        ProjectionBlock(
            g.projection,
            radius,
            centre[0],
            centre[1],
            lines,
            samples,
            s,
            line_offset,
            sample_offset,
            west,
            east,
            south,
            north,
        )
    )
    return f"""PDS_VERSION_ID            = PDS3
/* Identification Information */
NOT_APPLICABLE_CONSTANT   = -9998
DATA_SET_ID               = "MRO-M-HIRISE-3-RDR-V1.1"
DATA_SET_NAME             = "MRO MARS HIGH RESOLUTION IMAGING SCIENCE
                            EXPERIMENT RDR V1.1"
PRODUCER_INSTITUTION_NAME = "MARSICE SYNTHETIC SAMPLE"
PRODUCER_ID               = "MARSICE"
PRODUCER_FULL_NAME        = "MARSICE SCENE RENDERER"
OBSERVATION_ID            = "{obs}"
PRODUCT_ID                = "{pid}"
{HIRISE_IDENTIFICATION}
MISSION_PHASE_NAME        = "EXTENDED SCIENCE PHASE"
ORBIT_NUMBER              = {int(obs.split("_")[1])}
RATIONALE_DESC            = "Synthetic scene rendered by MarsIce, seed {config.seed}"
SOFTWARE_NAME             = "marsice synthetic product writer"
{projection_object}
GROUP = TIME_PARAMETERS
    MRO:OBSERVATION_START_TIME   = {start.strftime(ts)[:-3]}
    START_TIME                   = {start.strftime(ts)[:-3]}
    SPACECRAFT_CLOCK_START_COUNT = "0000000000:00000"
    STOP_TIME                    = {stop.strftime(ts)[:-3]}
    SPACECRAFT_CLOCK_STOP_COUNT  = "0000000000:00000"
    PRODUCT_CREATION_TIME        = {start.strftime("%Y-%m-%dT%H:%M:%S")}
END_GROUP = TIME_PARAMETERS
GROUP = INSTRUMENT_SETTING_PARAMETERS
    MRO:CCD_FLAG                = (ON, ON, ON, ON, ON, ON, ON, ON, ON, ON, ON,
                                  ON, ON, ON)
    MRO:BINNING                 = ({bins})
    MRO:TDI                     = (64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
                                  -9998, -9998, -9998, -9998)
END_GROUP = INSTRUMENT_SETTING_PARAMETERS
GROUP = VIEWING_PARAMETERS
    INCIDENCE_ANGLE   = {config.incidence:.6f} <DEG>
    EMISSION_ANGLE    = {g.emission_angle:.6f} <DEG>
    PHASE_ANGLE       = {abs(config.incidence - g.emission_angle):.6f} <DEG>
    LOCAL_TIME        = {g.local_time:.5f} <LOCALDAY/24>
    SOLAR_LONGITUDE   = {g.solar_longitude:.6f} <DEG>
    SUB_SOLAR_AZIMUTH = {sub_solar_azimuth:.6f} <DEG>
    NORTH_AZIMUTH     = {north_azimuth:.6f} <DEG>
END_GROUP = VIEWING_PARAMETERS

/* The JPEG2000 image data file associated with this label. */
OBJECT = COMPRESSED_FILE
    FILE_NAME                  = "{pid}.JP2"
    RECORD_TYPE                = UNDEFINED
    ENCODING_TYPE              = "JP2"
    ENCODING_TYPE_VERSION_NAME = "ISO/IEC15444-1:2004"
    INTERCHANGE_FORMAT         = BINARY
    UNCOMPRESSED_FILE_NAME     = "{pid}.IMG"
    REQUIRED_STORAGE_BYTES     = {lines * samples * 2} <BYTES>
    ^DESCRIPTION               = "JP2INFO.TXT"
END_OBJECT = COMPRESSED_FILE

/* The source image data definition. */
OBJECT = UNCOMPRESSED_FILE
    FILE_NAME    = "{pid}.IMG"
    RECORD_TYPE  = FIXED_LENGTH
    RECORD_BYTES = {samples * 2} <BYTES>
    FILE_RECORDS = {lines}
    ^IMAGE       = "{pid}.IMG"
    OBJECT = IMAGE
        DESCRIPTION                = "HiRISE projected and mosaicked product"
        LINES                      = {lines}
        LINE_SAMPLES               = {samples}
        BANDS                      = 1
        SAMPLE_TYPE                = MSB_UNSIGNED_INTEGER
        SAMPLE_BITS                = 16
        SAMPLE_BIT_MASK            = 2#0000001111111111#
        SCALING_FACTOR             = {scene.scaling_factor:.14e}
        OFFSET                     = {scene.offset:.15f}
        BAND_STORAGE_TYPE          = BAND_SEQUENTIAL
        CORE_NULL                  = 0
        CORE_LOW_REPR_SATURATION   = 1
        CORE_LOW_INSTR_SATURATION  = 2
        CORE_HIGH_REPR_SATURATION  = 1023
        CORE_HIGH_INSTR_SATURATION = 1022
        CENTER_FILTER_WAVELENGTH   = 700 <NM>
        MRO:MINIMUM_STRETCH        = 3
        MRO:MAXIMUM_STRETCH        = 1021
        FILTER_NAME                = "RED"
    END_OBJECT = IMAGE
END_OBJECT = UNCOMPRESSED_FILE
END
"""
