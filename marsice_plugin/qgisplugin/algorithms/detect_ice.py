"""Processing algorithm ``marsice:detect``: score a HiRISE product chunk by chunk for ice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
)

from ..compat import DOUBLE, POLYGONS, mark_advanced
from ..layers import queue_geopackage, queue_raster
from .base import MarsIceAlgorithm
from .parameters import add_model_parameters, add_product_parameter, model_args, product_arg, threshold_args

PRECISIONS = ["float32", "mixed_float16", "mixed_bfloat16"]
#: Read level choices; the first leaves the level to the model card (``--read-level`` omitted), the others are 0, 1, 2.
READ_LEVELS = [
    "As the model was trained (its card)",
    "0: every pixel",
    "1: half resolution",
    "2: quarter resolution",
]


class DetectIceAlgorithm(MarsIceAlgorithm):
    """``marsice detect`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    INPUT = "INPUT"
    OUTPUT = "OUTPUT"
    QUICKLOOK = "QUICKLOOK"
    OVERLAP = "OVERLAP"
    PROBABILITY = "PROBABILITY"
    PRECISION = "PRECISION"
    READ_LEVEL = "READ_LEVEL"
    ALL_CANDIDATES = "ALL_CANDIDATES"
    SEARCH_ALL = "SEARCH_ALL"
    SEARCH_THRESHOLD = "SEARCH_THRESHOLD"
    SUN_AZIMUTH = "SUN_AZIMUTH"

    NAME = "detect"
    COMMAND = "detect"
    DISPLAY_NAME = "Detect ice patches"
    GROUP = "Detection"
    GROUP_ID = "detection"
    ICON = "detection.svg"
    TAGS = ("ice", "cnn", "detection", "probability", "candidates")
    HELP_DOC = "README.md#inference"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        add_product_parameter(self)
        add_model_parameters(self)
        self.addParameter(
            QgsProcessingParameterBoolean(self.OVERLAP, "Overlap chunks (patches on chunk edges seen whole)", True)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.ALL_CANDIDATES, "Keep every bright patch (also those under the second stage's threshold)", False
            )
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterBoolean(
                    self.SEARCH_ALL, "Outline bright patches in every chunk, not only flagged ones", False
                )
            )
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterNumber(
                    self.SEARCH_THRESHOLD,
                    "Outline chunks from this CNN probability (empty: the threshold; lower finds more, and more false)",
                    DOUBLE,
                    defaultValue=None,
                    optional=True,
                    minValue=0.0,
                    maxValue=1.0,
                )
            )
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterNumber(
                    self.SUN_AZIMUTH,
                    "Sun azimuth, clockwise from north (degrees; empty = the label's, tags', catalogue's or, failing "
                    "those, HiRISE's typical one at the product's latitude)",
                    DOUBLE,
                    defaultValue=None,
                    optional=True,
                    minValue=0.0,
                    maxValue=360.0,
                )
            )
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterEnum(self.PRECISION, "Compute precision", options=PRECISIONS, defaultValue=0)
            )
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterEnum(self.READ_LEVEL, "Read level", options=READ_LEVELS, defaultValue=0)
            )
        )
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Ice probability chunks", POLYGONS))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.PROBABILITY,
                "Probability raster (empty: beside the GeoPackage)",
                "GeoTIFF (*.tif)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.QUICKLOOK,
                "Quick-look image",
                "PNG images (*.png)",
                optional=True,
                createByDefault=False,
            )
        )

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        product = product_arg(self, parameters, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        quicklook = self.parameterAsFileOutput(parameters, self.QUICKLOOK, context)
        raster = self.parameterAsFileOutput(parameters, self.PROBABILITY, context)
        precision = PRECISIONS[self.parameterAsEnum(parameters, self.PRECISION, context)]
        read_level = self.parameterAsEnum(parameters, self.READ_LEVEL, context) - 1  # -1: the model card's

        args = [self.COMMAND, product, "-o", output]
        args += threshold_args(self, parameters, context) + model_args(self, parameters, context)
        args += ["--quicklook", quicklook] if quicklook else []
        args += [] if self.parameterAsBoolean(parameters, self.OVERLAP, context) else ["--overlap", "0"]
        args += ["--probability-raster", raster] if raster else []  # empty: the CLI's default name, written
        args += ["--precision", precision] if precision != "float32" else []
        args += ["--read-level", str(read_level)] if read_level >= 0 else []
        args += ["--all-candidates"] if self.parameterAsBoolean(parameters, self.ALL_CANDIDATES, context) else []
        args += ["--search", "all"] if self.parameterAsBoolean(parameters, self.SEARCH_ALL, context) else []
        search_threshold = self.optional_double(parameters, self.SEARCH_THRESHOLD, context)
        args += ["--search-threshold", str(search_threshold)] if search_threshold is not None else []
        sun_azimuth = self.optional_double(parameters, self.SUN_AZIMUTH, context)
        args += ["--sun-azimuth", str(sun_azimuth)] if sun_azimuth is not None else []
        return args

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        group = self.run_group(output)
        if Path(output).is_file():
            queue_geopackage(context, output, group, replace=output)
        quicklook = self.parameterAsFileOutput(parameters, self.QUICKLOOK, context)
        # left empty, the raster is where the CLI says it wrote it (its default name beside the GeoPackage)
        raster = self.parameterAsFileOutput(parameters, self.PROBABILITY, context) or outputs.get(self.PROBABILITY)
        if raster:  # styled by the .qml marsice detect writes beside it, in the same group as the layers
            queue_raster(context, raster, group)
        return {self.OUTPUT: output, self.QUICKLOOK: quicklook or None, self.PROBABILITY: raster or None}
