"""The HiRISE catalogue: find products by latitude band and season, pair DTMs, download files.

Pure library (no QGIS): :mod:`.search` holds the query and its filters, :mod:`.ode` the live PDS
Orbital Data Explorer client, :mod:`.index` the bundled offline catalogue and the official
RDRCUMINDEX.TAB reader, :mod:`.footprints` the GeoPackage layer, :mod:`.download` the resumable
downloader into the size-limited folder of :mod:`.cache`, :mod:`.http` the safeguards every request to a
server goes through, and :mod:`.dtm` the DTM pairing. Every source returns the same
:class:`~.records.CatalogueProduct`, and every filter is applied locally whatever the source.
"""
