"""Parameters that several MarsIce algorithms take, each declared once with its argv mapping beside it.

Why one place: the CNN model, the latitude band and season of a search, the catalogue and the labelled
training data are the same ``marsice`` options in every algorithm that takes them. Declared in each algorithm,
the dialogs' labels, ranges and defaults (and the options they map onto) could drift apart. Each ``add_*``
function adds its parameters in an algorithm's ``initAlgorithm``, where the algorithm wants them in the
dialog; the function beside it turns their values into argv words for the algorithm's ``cli_args``, which
places them where that command line wants them.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..compat import DOUBLE, FILE, FOLDER
from .base import MarsIceAlgorithm

#: Catalogues a search can ask (``--source``); the first is the default.
SOURCES = ["auto", "ode", "bundled"]

#: The files a HiRISE product may be given as: a PDS3 label beside its image, or a Mars raster.
PRODUCT_FILTER = (
    "HiRISE PDS3 labels and rasters (*.LBL *.lbl *.JP2 *.jp2 *.IMG *.img *.tif *.tiff *.cub *.vrt);;All files (*.*)"
)

_BAND = ("LAT_MIN", "LAT_MAX")
_SEASON = ("LS_FROM", "LS_TO")


# -- the product -----------------------------------------------------------------------------------------------


def add_product_parameter(alg: MarsIceAlgorithm) -> None:
    """``INPUT``: the HiRISE product to read (the command's positional PRODUCT)."""
    alg.addParameter(
        QgsProcessingParameterFile(
            "INPUT", "HiRISE product (PDS3 .LBL with its .JP2, or a Mars raster)", FILE, fileFilter=PRODUCT_FILTER
        )
    )


# -- where and when to search ----------------------------------------------------------------------------------


def add_search_parameters(alg: MarsIceAlgorithm) -> None:
    """``LAT_MIN``/``LAT_MAX`` and ``LS_FROM``/``LS_TO``: the latitude band and season of a search."""
    for key, label, default, lo, hi in (
        ("LAT_MIN", "Latitude band: from (°N)", -60.0, -90.0, 90.0),
        ("LAT_MAX", "Latitude band: to (°N)", -40.0, -90.0, 90.0),
        ("LS_FROM", "Solar longitude Ls: from (°)", 140.0, 0.0, 360.0),
        ("LS_TO", "Solar longitude Ls: to (°)", 200.0, 0.0, 360.0),
    ):
        alg.addParameter(
            QgsProcessingParameterNumber(key, label, DOUBLE, defaultValue=default, minValue=lo, maxValue=hi)
        )


def search_args(alg: MarsIceAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
    """``--lat MIN MAX --ls FROM TO``."""
    args = []
    for option, keys in (("--lat", _BAND), ("--ls", _SEASON)):
        args += [option, *(str(alg.parameterAsDouble(parameters, key, context)) for key in keys)]
    return args


def add_source_parameter(alg: MarsIceAlgorithm) -> None:
    """``SOURCE``: the catalogue searched (one of :data:`SOURCES`)."""
    alg.addParameter(QgsProcessingParameterEnum("SOURCE", "Catalogue", options=SOURCES, defaultValue=0))


def source_arg(alg: MarsIceAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
    """The ``--source`` value: the catalogue chosen."""
    return SOURCES[alg.parameterAsEnum(parameters, "SOURCE", context)]


# -- the CNN -----------------------------------------------------------------------------------------------------


def add_model_parameters(alg: MarsIceAlgorithm) -> None:
    """``MODEL``, ``FAST`` and ``THRESHOLD``: the CNN that scores the chunks (default: the shipped model)."""
    alg.addParameter(
        QgsProcessingParameterFile(
            "MODEL", "CNN model (.keras; empty = the shipped model)", FILE, extension="keras", optional=True
        )
    )
    alg.addParameter(QgsProcessingParameterBoolean("FAST", "Fast model (shipped model only)", False))
    add_threshold_parameter(alg, "Probability threshold for candidates (empty: the model's own)")


def model_args(alg: MarsIceAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
    """``--model PATH``, else ``--fast`` when asked, else nothing (the shipped model); a given model wins."""
    model = alg.parameterAsFile(parameters, "MODEL", context)
    if model:
        return ["--model", model]
    return ["--fast"] if alg.parameterAsBoolean(parameters, "FAST", context) else []


def add_threshold_parameter(alg: MarsIceAlgorithm, label: str) -> None:
    """``THRESHOLD``: the probability that flags a chunk; empty leaves it to the model's card."""
    alg.addParameter(
        QgsProcessingParameterNumber(
            "THRESHOLD", label, DOUBLE, defaultValue=None, optional=True, minValue=0.0, maxValue=1.0
        )
    )


def threshold_args(alg: MarsIceAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
    """``--threshold P`` when one was given."""
    threshold = alg.optional_double(parameters, "THRESHOLD", context)
    return ["--threshold", str(threshold)] if threshold is not None else []


# -- labelled chunks (train, evaluate) ---------------------------------------------------------------------------


def add_labelled_data_parameters(alg: MarsIceAlgorithm) -> None:
    """``DATA_FOLDER`` or ``TILE_INDEX`` (with its ``LABEL_FIELD``): labelled chunks, in either form."""
    alg.addParameter(
        QgsProcessingParameterFile(
            "DATA_FOLDER", "Labelled chunks folder (sub-folders 0/ and 1/)", FOLDER, optional=True
        )
    )
    alg.addParameter(
        QgsProcessingParameterFile(
            "TILE_INDEX", "Labelled tile index (.gpkg from Tile product)", FILE, extension="gpkg", optional=True
        )
    )
    alg.addParameter(QgsProcessingParameterString("LABEL_FIELD", "Label field of the tile index", "label"))


def labelled_data_args(
    alg: MarsIceAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext, both: str
) -> tuple[list[str], list[str]]:
    """The command's DATA positional (none, the folder or the index) and ``--label-field`` for an index.

    Both forms at once are refused before anything runs: "Give either ..., not both" followed by ``both``,
    which says what the algorithm would have the user do instead.
    """
    folder = alg.parameterAsFile(parameters, "DATA_FOLDER", context)
    index = alg.parameterAsFile(parameters, "TILE_INDEX", context)
    if folder and index:
        raise QgsProcessingException(f"Give either a labelled chunks folder or a labelled tile index, not both{both}")
    label_field = ["--label-field", alg.parameterAsString(parameters, "LABEL_FIELD", context)] if index else []
    return [data for data in (folder, index) if data], label_field
