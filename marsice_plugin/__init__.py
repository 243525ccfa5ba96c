"""MarsIce: remnant seasonal water-ice patches in HiRISE images of Mars.

The package is a pure Python core (no QGIS import anywhere outside ``marsice_plugin.qgisplugin``)
plus the QGIS Processing provider in that sub-package. Importing this package is cheap: heavy
libraries (TensorFlow, rasterio, pyproj) are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"


def classFactory(iface):
    """QGIS plugin entry point: QGIS calls this with its ``QgisInterface``."""
    from .qgisplugin.plugin import MarsIcePlugin

    return MarsIcePlugin(iface)
