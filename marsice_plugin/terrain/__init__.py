"""Terrain context for ice candidates: DTM-derived slope, aspect, poleward flag and sun shadowing.

Pure numpy/pyproj, no QGIS import. The sun convention is the one of :mod:`marsice_plugin.synthetic.illumination`
(azimuth from north, clockwise = (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360), so masks computed here match the
renderer that made the generated scenes.
"""
