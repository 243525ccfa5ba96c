"""Processing algorithm ``marsice:tile``: cut a product into georeferenced chunks for labelling."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from ..compat import DOUBLE, INTEGER
from ..layers import queue_geopackage
from .base import MarsIceAlgorithm
from .parameters import add_product_parameter, product_arg


class TileProductAlgorithm(MarsIceAlgorithm):
    """``marsice tile`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    INPUT = "INPUT"
    SIZE = "SIZE"
    OVERLAP = "OVERLAP"
    SCALE = "SCALE"
    CHUNK_M = "CHUNK_M"
    MODEL_SCALE = "MODEL_SCALE"
    MAX_CENTER_NODATA = "MAX_CENTER_NODATA"
    MAX_NODATA = "MAX_NODATA"
    NO_REPAIR = "NO_REPAIR"
    INDEX_ONLY = "INDEX_ONLY"
    OVERWRITE = "OVERWRITE"
    OUTPUT = "OUTPUT"
    INDEX = "INDEX"
    TILES = "TILES"
    CHUNKS = "CHUNKS"
    SKIPPED = "SKIPPED"

    NAME = "tile"
    COMMAND = "tile"
    DISPLAY_NAME = "Tile product"
    GROUP = "Training and evaluation"
    GROUP_ID = "model"
    ICON = "model.svg"
    TAGS = ("tiles", "chunks", "labels", "training data", "geotiff")
    HELP_DOC = "README.md#tiling"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        add_product_parameter(self)
        self.addParameter(
            QgsProcessingParameterNumber(self.SIZE, "Chunk size (pixels)", INTEGER, defaultValue=1024, minValue=16)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.OVERLAP, "Overlap (pixels; empty = enough for a 32 m patch)", INTEGER, optional=True, minValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SCALE,
                "Read scale (fraction of full resolution)",
                DOUBLE,
                defaultValue=1.0,
                minValue=0.01,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.CHUNK_M, "Chunk side in metres (instead of pixels)", DOUBLE, optional=True, minValue=1.0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MODEL_SCALE,
                "Resample chunks to this ground scale (m/pixel)",
                DOUBLE,
                optional=True,
                minValue=0.01,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_CENTER_NODATA,
                "Skip chunks whose centre is more no-data than (fraction)",
                DOUBLE,
                defaultValue=0.01,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_NODATA,
                "Skip chunks that are more no-data than (fraction)",
                DOUBLE,
                defaultValue=0.5,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(QgsProcessingParameterBoolean(self.NO_REPAIR, "Keep pixels as read (no repair)", False))
        self.addParameter(QgsProcessingParameterBoolean(self.INDEX_ONLY, "Tile index only (no GeoTIFFs)", False))
        self.addParameter(QgsProcessingParameterBoolean(self.OVERWRITE, "Replace an earlier tiling", False))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Output folder"))
        self.addOutput(QgsProcessingOutputVectorLayer(self.INDEX, "Tile index"))
        self.addOutput(QgsProcessingOutputFolder(self.TILES, "Chunk GeoTIFFs folder"))
        self.addOutput(QgsProcessingOutputNumber(self.CHUNKS, "Chunks"))
        self.addOutput(QgsProcessingOutputNumber(self.SKIPPED, "Chunks skipped"))

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        product = product_arg(self, parameters, context)
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        size = self.parameterAsInt(parameters, self.SIZE, context)
        args = [self.COMMAND, product, "-o", folder, "--size", str(size)]
        if self.is_set(parameters, self.OVERLAP):
            args += ["--overlap", str(self.parameterAsInt(parameters, self.OVERLAP, context))]
        args += ["--scale", str(self.parameterAsDouble(parameters, self.SCALE, context))]
        for key, option in ((self.CHUNK_M, "--chunk-m"), (self.MODEL_SCALE, "--model-scale")):
            value = self.optional_double(parameters, key, context)
            args += [option, str(value)] if value is not None else []
        args += ["--max-center-nodata", str(self.parameterAsDouble(parameters, self.MAX_CENTER_NODATA, context))]
        args += ["--max-nodata", str(self.parameterAsDouble(parameters, self.MAX_NODATA, context))]
        for key, flag in (
            (self.NO_REPAIR, "--no-repair"),
            (self.INDEX_ONLY, "--index-only"),
            (self.OVERWRITE, "--overwrite"),
        ):
            args += [flag] if self.parameterAsBoolean(parameters, key, context) else []
        return args

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        index = str(outputs.get("INDEX", ""))
        if index:
            queue_geopackage(context, index, self.run_group(index))
        return {
            self.OUTPUT: self.parameterAsFileOutput(parameters, self.OUTPUT, context),
            self.INDEX: index or None,
            self.TILES: outputs.get("TILES"),
            self.CHUNKS: outputs.get("chunks"),
            self.SKIPPED: outputs.get("skipped"),
        }
