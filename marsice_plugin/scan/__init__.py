"""Scanning many products on Dask: plan, worker tasks, client-side commits, manifest and summary.

``plan`` plans a scan (search, DTM pairing, the resume set, worker jobs, what it would pull); ``tasks``
holds the functions workers run; ``runner`` connects to a cluster, submits and commits; ``manifest``
records each product's state for resuming; ``summary`` makes the final table; ``progress_bar`` shows
the run. The CLI, ``marsice scan``, only maps its arguments to ``plan.ScanOptions``.
"""
