"""Candidate sites over time: grouping, repeat coverage, season context, exports and plots.

A *site* is one place on Mars where bright patches consistent with remnant ice were outlined in one or more
products; the same ground seen at several Ls values tells a geologist whether a patch persisted, disappeared
(melted or sublimated, or was hidden by dust) or appeared. Modules:

* :mod:`.inputs`: read ``ice_candidates``, ``products`` and ``chunks`` from results GeoPackages.
* :mod:`.grouping`: candidates within a tolerance in metres become one site with a stable id.
* :mod:`.coverage`: catalogue observations whose footprint covers a site (processed or not).
* :mod:`.observations`: one row per site and observation, with the transitions between consecutive Ls.
* :mod:`.seasons`: dusty periods and the low-contrast flag, so absence is not read as melt.
* :mod:`.build`: the ``sites`` GeoPackage (``sites`` layer and ``site_observations`` table).
* :mod:`.export`: CSV (JMARS-ready), KML and GeoJSON.
* :mod:`.plots`: probability against Ls per site, one series per Mars Year (PNG).
"""
