"""Scanning many products on Dask: plan, worker tasks, client-side commits, manifest and summary.

``plan`` turns search results into worker jobs and sizes what a scan would pull; ``tasks`` holds the
functions workers run; ``runner`` connects to a cluster, submits and commits; ``manifest`` records each
product's state for resuming; ``summary`` makes the final table. The CLI is ``marsice scan``.
"""
