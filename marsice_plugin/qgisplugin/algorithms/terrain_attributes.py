"""Processing algorithm ``marsice:terrain``: DTM slope, aspect and shadow on the DTM's grid; candidate ranking."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from ..compat import DOUBLE, FILE, mark_advanced
from ..layers import queue_raster
from .base import MarsIceAlgorithm
from .parameters import add_product_parameter, product_arg

_IMAGE_FILTER = "HiRISE PDS3 labels and rasters (*.LBL *.lbl *.tif *.tiff *.cub *.vrt);;All files (*.*)"
_DTM_FILTER = "DTMs (*.IMG *.img *.tif *.tiff *.cub *.vrt);;All files (*.*)"


class TerrainAttributesAlgorithm(MarsIceAlgorithm):
    """``marsice terrain`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    DTM = "DTM"
    INPUT = "INPUT"
    CANDIDATES = "CANDIDATES"
    RING_M = "RING_M"
    SUN_AZIMUTH = "SUN_AZIMUTH"
    INCIDENCE = "INCIDENCE"
    OUTPUT = "OUTPUT"

    NAME = "terrain"
    COMMAND = "terrain"
    DISPLAY_NAME = "Terrain attributes"
    GROUP = "Detection"
    GROUP_ID = "detection"
    ICON = "detection.svg"
    TAGS = ("terrain", "dtm", "slope", "aspect", "shadow", "ranking", "candidates")
    HELP_DOC = "README.md#terrain"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        add_product_parameter(self, self.DTM, "DTM (HiRISE .IMG or Mars DEM)", _DTM_FILTER)
        add_product_parameter(self, self.INPUT, "HiRISE product (PDS3 .LBL or a Mars raster)", _IMAGE_FILTER)
        self.addParameter(
            QgsProcessingParameterFile(
                self.CANDIDATES,
                "Detection results to rank (GeoPackage with ice_candidates; updated in place)",
                FILE,
                extension="gpkg",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.RING_M, "Width of the sunward band searched for shade (m)", DOUBLE, defaultValue=5.0, minValue=0.1
            )
        )
        for name, label, maximum in (
            (
                self.SUN_AZIMUTH,
                "Sun azimuth, clockwise from north (degrees; empty = the label's, tags' or catalogue's)",
                360.0,
            ),
            (
                self.INCIDENCE,
                "Solar incidence angle, from the vertical (degrees, below 90; empty = the label's, tags' or "
                "catalogue's)",
                90.0,
            ),
        ):
            self.addParameter(
                mark_advanced(
                    QgsProcessingParameterNumber(
                        name, label, DOUBLE, defaultValue=None, optional=True, minValue=0.0, maxValue=maximum
                    )
                )
            )
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Terrain rasters folder"))
        for name, label in (("SLOPE", "Slope"), ("ASPECT", "Aspect"), ("POLEWARD", "Poleward"), ("SHADOW", "Shadow")):
            self.addOutput(QgsProcessingOutputRasterLayer(name, label))
        self.addOutput(QgsProcessingOutputNumber("PEAK_RATIO", "Co-registration peak ratio"))
        self.addOutput(QgsProcessingOutputNumber("CANDIDATES_SCORED", "Candidates scored"))

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        dtm = product_arg(self, parameters, context, self.DTM)
        product = product_arg(self, parameters, context, self.INPUT)
        candidates = self.parameterAsFile(parameters, self.CANDIDATES, context)
        ring = self.parameterAsDouble(parameters, self.RING_M, context)
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT, context)

        args = [self.COMMAND, "--dtm", dtm, "--image", product, "-o", folder, "--ring-m", str(ring)]
        args += ["--candidates", candidates] if candidates else []
        for key, option in ((self.SUN_AZIMUTH, "--sun-azimuth"), (self.INCIDENCE, "--incidence")):
            value = self.optional_double(parameters, key, context)
            args += [option, str(value)] if value is not None else []
        return args

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        group = self.run_group(folder)
        # the candidates GeoPackage got its terrain fields in place: its open layers reload as the rasters load
        reload = self.parameterAsFile(parameters, self.CANDIDATES, context) if outputs.get("candidates") else ""
        for kind in ("SLOPE", "ASPECT", "POLEWARD", "SHADOW"):  # into the run's group, each styled for its kind
            if outputs.get(kind):
                queue_raster(context, outputs[kind], group, reload=reload)
                reload = ""  # once is enough
        return {
            self.OUTPUT: folder,
            "SLOPE": outputs.get("SLOPE"),
            "ASPECT": outputs.get("ASPECT"),
            "POLEWARD": outputs.get("POLEWARD"),
            "SHADOW": outputs.get("SHADOW"),
            "PEAK_RATIO": outputs.get("peak_ratio"),
            "CANDIDATES_SCORED": outputs.get("candidates"),
        }
