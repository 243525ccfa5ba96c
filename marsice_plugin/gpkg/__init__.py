"""The GeoPackage module: every MarsIce read, write and update of a GeoPackage goes through it (or through geopandas).

Why one module: files used to be opened by a dozen ``sqlite3.connect`` calls, each reader with its own error for the
same bad file. Now nothing else in MarsIce opens an SQLite file (the scan manifest, a plain SQLite database, uses
:func:`connect` and :func:`transaction` too), and a file that is missing, not a GeoPackage, or lacks a layer or a
column gets one :class:`~marsice_plugin.errors.GeoPackageError` whichever command reads it.

Parts: :mod:`.blob` (the binary geometry encoding), :mod:`.connect` (opening a file, transactions, the SQL functions
the spatial index needs), :mod:`.write` (new files and layers, atomically), :mod:`.rtree` (the R-tree spatial index
every layer gets), :mod:`.read` (layer names, layer info, rows), :mod:`.update` (rows and columns of an existing
layer, in place). Results files, which several processes may write, are written through
:mod:`marsice_plugin.results` (its lock) on top of this.

Standard library only at import time (shapely and pyproj are imported when a geometry or a CRS is handled): QGIS's
own Python, which has no shapely, imports this package to list a file's layers.
"""

from .blob import blob_envelope, geometry_blob, parse_geometry_blob
from .connect import connect, quote, register_functions, transaction
from .read import DEFAULT_HINT, Feature, LayerInfo, layer_info, layer_names, read_layer
from .rtree import create_spatial_index, has_spatial_index
from .update import add_columns, update_rows
from .write import APPLICATION_ID, MARS_SRS_ID, USER_VERSION, Field, GeoPackage, cast_value, write_new

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_HINT",
    "MARS_SRS_ID",
    "USER_VERSION",
    "Feature",
    "Field",
    "GeoPackage",
    "LayerInfo",
    "add_columns",
    "blob_envelope",
    "cast_value",
    "connect",
    "create_spatial_index",
    "geometry_blob",
    "has_spatial_index",
    "layer_info",
    "layer_names",
    "parse_geometry_blob",
    "quote",
    "read_layer",
    "register_functions",
    "transaction",
    "update_rows",
    "write_new",
]
