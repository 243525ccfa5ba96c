"""Parameters that several MarsIce algorithms take, each declared once with its argv mapping beside it.

Why one place: the CNN model, the latitude band and season of a search, the catalogue and the labelled
training data are the same ``marsice`` options in every algorithm that takes them. Declared in each algorithm,
the dialogs' labels, ranges and defaults (and the options they map onto) could drift apart. Each ``add_*``
function adds its parameters in an algorithm's ``initAlgorithm``, where the algorithm wants them in the
dialog; the function beside it turns their values into argv words for the algorithm's ``cli_args``, which
places them where that command line wants them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..compat import DOUBLE, FILE, FOLDER, POLYGONS
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


def add_product_parameter(
    alg: MarsIceAlgorithm,
    name: str = "INPUT",
    label: str = "HiRISE product (PDS3 .LBL with its .JP2, or a Mars raster)",
    file_filter: str = PRODUCT_FILTER,
) -> None:
    """``name``: a product file, or ``name``_LAYER: a raster layer loaded in the project (one of the two).

    Two parameters rather than a raster-layer one: a file stays a plain path that MarsIce opens and checks itself
    (a raster-layer parameter would have QGIS's GDAL open it first, and refuse some products with its own
    message), while a HiRISE image already on the map is picked from the list.
    """
    alg.addParameter(QgsProcessingParameterFile(name, label, FILE, fileFilter=file_filter, optional=True))
    alg.addParameter(
        QgsProcessingParameterRasterLayer(f"{name}_LAYER", "Or: the same, as a raster layer on the map", optional=True)
    )


def product_arg(
    alg: MarsIceAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext, name: str = "INPUT"
) -> str:
    """The product's path for argv: the file given, or the file behind the chosen raster layer."""
    path = alg.parameterAsFile(parameters, name, context)
    layer = (
        alg.parameterAsRasterLayer(parameters, f"{name}_LAYER", context)
        if alg.is_set(parameters, f"{name}_LAYER")
        else None
    )
    label = alg.parameterDefinition(name).description()
    if path and layer is not None:
        raise QgsProcessingException(f"{label}: give either a file or a raster layer, not both")
    if layer is None:
        if not path:
            raise QgsProcessingException(f"{label}: give a file or choose a raster layer on the map")
        return path
    source = layer_file(layer.source())
    if layer.providerType() != "gdal" or not source:
        raise QgsProcessingException(
            f"The layer '{layer.name()}' is not read from a file ({layer.source()}); MarsIce reads products from "
            "files: give the product's .LBL or raster file instead"
        )
    return source


def layer_file(source: str) -> str:
    """The file path a layer source names ('' when it is not a file on disk, e.g. /vsimem/, a URL, a database)."""
    path = source.split("|", 1)[0]
    return path if path and Path(path).is_file() else ""


# -- footprints, all or the selected ones ------------------------------------------------------------------------


def add_footprints_layer_parameter(alg: MarsIceAlgorithm, label: str) -> None:
    """``FOOTPRINTS_LAYER``: a footprint layer on the map, whose products (or, ticked, selected ones) are used."""
    alg.addParameter(QgsProcessingParameterFeatureSource("FOOTPRINTS_LAYER", label, [POLYGONS], optional=True))


def footprint_ids(alg: MarsIceAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
    """The ``product_id`` of every feature of ``FOOTPRINTS_LAYER`` (only the selected ones when the dialog's
    "Selected features only" is ticked), in layer order, each once; [] when no layer was given."""
    if not alg.is_set(parameters, "FOOTPRINTS_LAYER"):
        return []
    source = alg.parameterAsSource(parameters, "FOOTPRINTS_LAYER", context)
    if source is None:
        raise QgsProcessingException(
            "The footprint layer could not be read; choose a layer from Search HiRISE products"
        )
    if source.fields().indexOf("product_id") < 0:
        raise QgsProcessingException(
            "The footprint layer has no product_id field; choose a layer written by Search HiRISE products"
        )
    ids = [str(feature["product_id"]).strip() for feature in source.getFeatures()]
    ids = list(dict.fromkeys(i for i in ids if i and i != "NULL"))
    if not ids:
        raise QgsProcessingException("No footprints chosen: select some on the map, or untick 'Selected features only'")
    return ids


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
