"""MarsIce: remnant seasonal water-ice patches in HiRISE images of Mars.

The package is a pure Python core (no QGIS import anywhere outside ``marsice_plugin.qgisplugin``)
plus the QGIS Processing provider in that sub-package. Importing this package is cheap: heavy
libraries (TensorFlow, rasterio, pyproj) are imported lazily by the modules that need them.
"""

# sqlite3 first, before anything can import TensorFlow: TensorFlow's library carries its own SQLite (built
# without the R-tree module), and Python's sqlite3 binds to whichever SQLite is loaded first; every GeoPackage
# MarsIce writes has an R-tree index (gpkg.rtree), so the system SQLite must win. The import is cheap.
import sqlite3  # noqa: F401

__version__ = "0.1.0"


def classFactory(iface):
    """QGIS plugin entry point: QGIS calls this with its ``QgisInterface``."""
    from .qgisplugin.plugin import MarsIcePlugin

    return MarsIcePlugin(iface)
