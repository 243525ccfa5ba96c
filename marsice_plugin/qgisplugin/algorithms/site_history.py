"""Processing algorithm ``marsice:site_history``: candidate sites over time, with a plot per site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
)

from ..compat import DOUBLE, FILE, POLYGONS
from ..layers import queue_geopackage, queue_layer
from .base import MarsIceAlgorithm

try:  # QGIS >= 3.36 and QGIS 4
    from qgis.core import Qgis

    _FILES = Qgis.ProcessingSourceType.File
except AttributeError:  # QGIS 3.22 - 3.34
    _FILES = QgsProcessing.TypeFile

CATALOGUES = ["auto", "bundled", "ode", "none"]


class SiteHistoryAlgorithm(MarsIceAlgorithm):
    """``marsice sites`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    INPUT = "INPUT"
    TOLERANCE_M = "TOLERANCE_M"
    CATALOGUE = "CATALOGUE"
    FOOTPRINTS = "FOOTPRINTS"
    PLOTS = "PLOTS"
    PULL_MISSING = "PULL_MISSING"
    OUTPUT = "OUTPUT"

    NAME = "site_history"
    COMMAND = "sites"
    DISPLAY_NAME = "Site history"
    GROUP = "Sites and targets"
    GROUP_ID = "sites"
    TAGS = ("sites", "time series", "seasons", "persistence", "observations", "targets")
    HELP_DOC = "docs/sites.md"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                self.INPUT, "Detection results (GeoPackages written by Detect ice patches)", _FILES
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TOLERANCE_M, "Same site within (m)", DOUBLE, defaultValue=20.0, minValue=0.0
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.CATALOGUE, "Catalogue of observations covering the sites", options=CATALOGUES, defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.FOOTPRINTS,
                "Or: footprints from Search HiRISE products (used instead of the catalogue)",
                FILE,
                extension="gpkg",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFolderDestination(
                self.PLOTS, "Plots folder (empty: beside the sites file)", optional=True, createByDefault=False
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.PULL_MISSING,
                "Queue of unprocessed observations (.gpkg for Download, or .txt)",
                "GeoPackage (*.gpkg);;Text (*.txt)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Sites", POLYGONS))
        self.addOutput(QgsProcessingOutputNumber("SITES", "Sites"))
        self.addOutput(QgsProcessingOutputNumber("OBSERVATIONS", "Site observations"))
        self.addOutput(QgsProcessingOutputFolder("PLOTS_FOLDER", "Plots folder"))
        self.addOutput(QgsProcessingOutputFile("QUEUE", "Queue of unprocessed observations"))

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        results = [p.split("|", 1)[0] for p in self.parameterAsFileList(parameters, self.INPUT, context)]
        tolerance = self.parameterAsDouble(parameters, self.TOLERANCE_M, context)
        catalogue = CATALOGUES[self.parameterAsEnum(parameters, self.CATALOGUE, context)]
        footprints = self.parameterAsFile(parameters, self.FOOTPRINTS, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        plots = (
            self.parameterAsFileOutput(parameters, self.PLOTS, context) if self.is_set(parameters, self.PLOTS) else ""
        )
        plots = plots or str(Path(output).with_name(Path(output).stem + "_plots"))
        queue = self.parameterAsFileOutput(parameters, self.PULL_MISSING, context)

        args = [self.COMMAND, *results, "-o", output, "--tolerance-m", str(tolerance), "--catalogue", catalogue]
        args += ["--plots", plots]
        args += ["--footprints", footprints] if footprints else []
        args += ["--pull-missing", queue] if queue else []
        return args

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        group = self.run_group(output)
        loaded = queue_geopackage(context, output, group, replace=output)
        if loaded:  # the observations table too, in the same project and the run's group
            project = context.layerToLoadOnCompletionDetails(loaded[0]).project
            queue_layer(context, f"{output}|layername=site_observations", "Site observations", group, project)
        return {
            self.OUTPUT: output,
            "SITES": outputs.get("sites"),
            "OBSERVATIONS": outputs.get("observations"),
            "PLOTS_FOLDER": outputs.get("PLOTS"),
            "QUEUE": outputs.get("QUEUE"),
        }
