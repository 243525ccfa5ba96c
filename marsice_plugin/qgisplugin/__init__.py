"""QGIS side of MarsIce: the Processing provider and its algorithms.

This is the only sub-package that imports ``qgis``; Qt is only imported through ``qgis.PyQt`` so the
same code runs under Qt5 (QGIS 3) and Qt6 (QGIS 4). The algorithms here never compute anything: they
turn parameters into ``marsice`` command lines and run them in MarsIce's own Python environment
(see :mod:`marsice_plugin.child_process`), because TensorFlow and rasterio must never share a process
with QGIS's own GDAL, PROJ and numpy.
"""
