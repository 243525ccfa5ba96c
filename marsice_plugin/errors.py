"""One root exception with specific subclasses.

Every error MarsIce raises on purpose derives from :class:`MarsIceError`; its message says what went
wrong *and what to do about it*, because the same text reaches a shell user (one line on stderr) and a
QGIS user (a ``QgsProcessingException`` raised by the thin algorithm layer).

Every class lives in this module, also those only one part of MarsIce raises: the QGIS side gets the
error's class *name* from the CLI's child process and looks it up here, so a class defined elsewhere
would reach the QGIS log as a plain ``MarsIceError``.
"""

from __future__ import annotations


class MarsIceError(Exception):
    """Root of all deliberate MarsIce errors.

    ``exit_code`` is what the CLI returns for this kind of error, so scripts can tell bad input
    (2) from a missing set-up (3) or a cancelled run (130).
    """

    exit_code = 1


class ProductError(MarsIceError):
    """A product (label, image or raster) cannot be read or is not usable as a map-projected image."""

    exit_code = 2


class LabelError(ProductError):
    """A PDS3 label is missing, malformed, or lacks a keyword MarsIce needs."""


class CRSError(ProductError):
    """A coordinate reference system is missing, unknown, or not a Mars CRS."""


class ModelError(MarsIceError):
    """A CNN model file cannot be loaded safely or does not fit the input."""

    exit_code = 2


class TrainingMemoryError(MarsIceError):
    """A training run would need more memory than the machine has (the message names a batch size that fits)."""

    exit_code = 2


class TilingError(MarsIceError):
    """Chunking options that cannot work together or with this product (chunk size, overlap, read scale)."""

    exit_code = 2


class TrainingDataError(MarsIceError):
    """Training or evaluation data that cannot be used as given (missing class folder, bad labels, no chunk)."""

    exit_code = 2


class OutputError(MarsIceError):
    """An output cannot be written (permissions, disk full, locked by another writer)."""

    exit_code = 4


class SetupError(MarsIceError):
    """The environment is incomplete (missing venv, missing optional dependency)."""

    exit_code = 3


class CancelledError(MarsIceError):
    """The run was cancelled by the user; no partial output is left behind."""

    exit_code = 130


class CatalogueError(MarsIceError):
    """A catalogue search cannot be answered: bad query, unreachable or failing ODE, unreadable index."""

    exit_code = 2


class ODEError(CatalogueError):
    """The PDS Orbital Data Explorer failed to answer, refused the query or answered nonsense."""

    exit_code = 5


class DownloadError(MarsIceError):
    """A product file cannot be downloaded safely (server error, wrong size, refused name or redirect)."""

    exit_code = 5


class GeoPackageError(MarsIceError):
    """A GeoPackage given as input is missing, is not a GeoPackage, or lacks the layer or a column MarsIce reads.

    One class for every reader (footprints, sites, results, tile index), raised by :mod:`marsice_plugin.gpkg`, so
    the same bad file gets the same message whichever command reads it.
    """

    exit_code = 2


class TerrainError(MarsIceError):
    """A DTM cannot be used with the image: no overlap, another body or CRS, all NoData, another planet radius."""

    exit_code = 2
