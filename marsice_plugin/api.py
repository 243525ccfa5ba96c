"""MarsIce in a notebook: search, detect, sites and results as geopandas GeoDataFrames.

Thin functions over the library, for users who work in Python rather than in the CLI or QGIS: each one
calls the function the matching command calls (``catalogue.sources.find_products``, ``pipeline.detect``
or ``detection.detect_product``, ``sites.build.build_sites``) and only converts what it returns into
frames. Results written to disk still go through the single results writer (``detect(..., output=...)``).

Every frame is in the common Mars CRS of the result layers (IAU_2015:49900, the Mars 2015 sphere,
planetocentric latitude, east longitude; built from the WKT a MarsIce GeoPackage stores, never an Earth
EPSG code), with the columns of the layer it stands for. Column types follow the layer's declared types
so that a frame built in memory and the same rows read back from a file are equal: integer columns are
pandas ``Int64`` and booleans ``boolean`` (both nullable, as the GeoPackage columns are), text is object.

``import marsice_plugin`` stays light: this module (and so geopandas) is imported only by
``from marsice_plugin import api``.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas
import pandas
import pyproj

from .errors import GeoPackageError
from .mars_crs import common_crs, wkt_without_authority
from .progress import Reporter
from .result_layers import RESULT_LAYERS

if TYPE_CHECKING:  # pragma: no cover
    from .gpkg import Field
    from .results import Row

#: QGIS's style table in a MarsIce GeoPackage: styling, not data, so :func:`read_results` leaves it out.
STYLE_TABLE = "layer_styles"

#: What to give instead of a file :func:`read_results` cannot read.
READ_HINT = "give a GeoPackage written by marsice (detect, scan, sites, search)"

#: pandas dtypes of the GeoPackage column types (nullable, as the columns are).
_DTYPES = {int: "Int64", float: "float64", bool: "boolean", str: "object"}
_READ_DTYPES = {"int64": "Int64", "int32": "Int64", "int16": "Int64", "bool": "boolean"}


def layer_crs() -> pyproj.CRS:
    """The CRS of every MarsIce layer, as a GeoPackage stores it (the common Mars CRS without authority ids)."""
    return pyproj.CRS.from_wkt(wkt_without_authority(common_crs()))


def frame(rows: Sequence[Row], fields: Sequence[Field]) -> geopandas.GeoDataFrame:
    """A layer's rows (geometry, attributes) as a GeoDataFrame with the layer's columns, in the layer CRS."""
    columns = {
        f.name: pandas.Series([attrs.get(f.name) for _, attrs in rows], dtype=_DTYPES[f.type], name=f.name)
        for f in fields
    }
    return geopandas.GeoDataFrame(columns, geometry=[geom for geom, _ in rows], crs=layer_crs())


def search(
    lat: tuple[float, float] = (-90.0, 90.0),
    ls: tuple[float, float] | None = None,
    *,
    source: str = "auto",
    ode_url: str | None = None,
    index_path: str | Path | None = None,
    timeout_s: float = 60.0,
    **query: Any,
) -> geopandas.GeoDataFrame:
    """Footprints of the HiRISE products matching a search: the layer ``marsice search -o`` writes, read back.

    ``query`` takes the other fields of :class:`~marsice_plugin.catalogue.search.SearchQuery` (``lon``,
    ``incidence``, ``scales``, ``mars_years``, ``product_type``, ``since``, ``lat_rule``). ``source`` is
    ``auto`` (ODE, else the bundled catalogue, with a warning), ``ode``, ``bundled`` or ``index``
    (``index_path``: an RDRCUMINDEX.TAB); the frame's ``source`` column says which one answered.
    """
    from .catalogue.footprints import LAYER, write_footprints
    from .catalogue.search import SearchQuery
    from .catalogue.sources import find_products

    found, _ = find_products(
        SearchQuery(lat=tuple(lat), ls=None if ls is None else tuple(ls), **query),
        source,
        ode_url=ode_url,
        index_path=Path(index_path) if index_path is not None else None,
        timeout_s=timeout_s,
        warn=lambda message: warnings.warn(message, stacklevel=3),
    )
    with tempfile.TemporaryDirectory(prefix="marsice-search-") as folder:
        return read_results(write_footprints(Path(folder) / "footprints.gpkg", found))[LAYER]


def detect(
    product: str | Path,
    output: str | Path | None = None,
    *,
    model: str | Path | None = None,
    threshold: float | None = None,
    fast: bool = False,
    reporter: Reporter | None = None,
    probability_raster: str | Path | bool | None = True,
    **options: Any,
) -> dict[str, geopandas.GeoDataFrame]:
    """Detect one product: its ``chunks``, ``ice_candidates`` and ``products`` rows as frames, by layer name.

    With ``output`` (a ``.gpkg``) this is ``marsice detect``: the single results writer adds the product to the
    file (or replaces its earlier rows) and the frames are this product's rows read back from it. Without it
    nothing is written and the frames are built from the same rows in memory. ``model`` (default: the shipped
    ensemble, or with ``fast`` the 256-px level-2 model) and ``threshold`` (default: the model card's) are
    those of the CLI; ``options`` takes the other fields of :class:`~marsice_plugin.detection.DetectOptions`
    (``chunk_size``, ``overlap``, ``batch_size``, ``precision``, ``read_level``, ``sun_azimuth``, ...).

    ``probability_raster`` only applies with ``output``, as in the CLI: True (default) writes the stitched
    probability GeoTIFF beside the GeoPackage (:func:`marsice_plugin.pipeline.probability_raster_path`), a path
    writes it there, None or False writes none; a written raster gets its QGIS style (``.qml``) beside it.
    """
    from .detection import DetectOptions, detect_product
    from .model_registry import default_model_path, fast_model_path, model_threshold
    from .pipeline import BESIDE_OUTPUT
    from .pipeline import detect as detect_to_file

    if model is not None and fast:
        raise ValueError("give a model or fast=True, not both")
    if output is None and isinstance(probability_raster, str | Path):
        raise ValueError("a probability_raster path needs an output GeoPackage: nothing is written without one")
    model_path = Path(model) if model is not None else fast_model_path() if fast else default_model_path()
    detect_options = DetectOptions(model_path=model_path, threshold=threshold, **options)
    if output is not None:
        raster = BESIDE_OUTPUT if probability_raster is True else probability_raster or None
        result = detect_to_file(product, output, detect_options, reporter, probability_raster=raster)
        if result.probability_raster is not None:
            from .styles import write_raster_style

            write_raster_style(result.probability_raster, result.threshold)
        frames = read_results(output)
        return {spec.name: _of_product(frames[spec.name], result.product_id) for spec in RESULT_LAYERS}
    from .cnn.model import load_model, with_precision
    from .product import open_product

    detect_options = replace(detect_options, threshold=model_threshold(threshold, model_path))
    with open_product(product) as opened:
        loaded = with_precision(load_model(model_path), detect_options.precision)
        found = detect_product(opened, loaded, detect_options, reporter, model_path.name)
    return {spec.name: frame(found.rows[spec.name], spec.fields) for spec in RESULT_LAYERS}


def _of_product(layer: geopandas.GeoDataFrame, product_id: str) -> geopandas.GeoDataFrame:
    return layer[layer["product_id"] == product_id].reset_index(drop=True)


def sites(
    results: str | Path | Sequence[str | Path],
    output: str | Path | None = None,
    *,
    tolerance_m: float = 20.0,
    catalogue: str = "auto",
    footprints: str | Path | None = None,
    index_path: str | Path | None = None,
    ode_url: str | None = None,
    measure_contrast: bool = True,
    reporter: Reporter | None = None,
) -> geopandas.GeoDataFrame:
    """Group the candidates of results GeoPackages into sites, as ``marsice sites`` does: the ``sites`` layer.

    With ``output`` the sites GeoPackage is kept there (its ``site_observations`` table lists every
    observation of each site: ``read_results(output)["site_observations"]``); without it, it is written to a
    temporary folder, read and removed. ``catalogue`` (``auto``, ``bundled``, ``ode``, ``index``, ``none``)
    is where the observations covering each site are looked up.
    """
    from .sites.build import SITES_LAYER, build_sites

    paths = [Path(results)] if isinstance(results, str | Path) else [Path(p) for p in results]
    kwargs: dict[str, Any] = {
        "tolerance_m": tolerance_m,
        "catalogue": catalogue,
        "footprints": Path(footprints) if footprints is not None else None,
        "index_path": Path(index_path) if index_path is not None else None,
        "ode_url": ode_url,
        "measure_contrast": measure_contrast,
        "reporter": reporter,
    }
    if output is not None:
        build_sites(paths, Path(output), **kwargs)
        return read_results(output)[SITES_LAYER]
    with tempfile.TemporaryDirectory(prefix="marsice-sites-") as folder:
        written = build_sites(paths, Path(folder) / "sites.gpkg", **kwargs).output
        return read_results(written)[SITES_LAYER]


def read_results(path: str | Path) -> dict[str, geopandas.GeoDataFrame | pandas.DataFrame]:
    """Every layer of a MarsIce GeoPackage (results, scan, sites, footprints, truth), by layer name.

    Feature layers are GeoDataFrames in the file's CRS; attribute tables (``site_observations``) are
    DataFrames. QGIS's style table is left out. The layers are listed by :mod:`marsice_plugin.gpkg`, so a
    missing file or one that is not a GeoPackage gets the :class:`GeoPackageError` every MarsIce reader gives;
    the rows are read by GDAL (pyogrio), which knows the GeoPackage's column types and CRS.
    """
    import pyogrio
    from pyogrio.errors import DataSourceError

    from .gpkg import layer_names

    path = Path(path)
    names = [name for name in layer_names(path, hint=READ_HINT) if name != STYLE_TABLE]
    try:
        return {name: _typed(pyogrio.read_dataframe(path, layer=name), path, name) for name in names}
    except DataSourceError as exc:
        raise GeoPackageError(f"{path} is not a readable GeoPackage ({exc}); {READ_HINT}") from exc


def _typed(layer: pandas.DataFrame, path: Path, name: str) -> pandas.DataFrame:
    """The layer with the nullable dtypes of its declared column types (those :func:`frame` gives)."""
    import pyogrio

    info = pyogrio.read_info(path, layer=name)
    declared = dict(zip(info["fields"], info["dtypes"], strict=True))
    return layer.astype({column: _READ_DTYPES[kind] for column, kind in declared.items() if kind in _READ_DTYPES})
