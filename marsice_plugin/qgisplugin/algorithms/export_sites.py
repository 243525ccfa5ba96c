"""Processing algorithm ``marsice:export_sites``: a sites GeoPackage as CSV (JMARS), KML or GeoJSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
)

from ..compat import FILE
from ..layers import queue_layer
from .base import MarsIceAlgorithm

#: ``--format`` values, in the dialog's order (the first is the default).
FORMATS = ["csv", "kml", "geojson"]


class ExportSitesAlgorithm(MarsIceAlgorithm):
    """``marsice export`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    INPUT = "INPUT"
    FORMAT = "FORMAT"
    OBSERVATIONS = "OBSERVATIONS"
    OUTPUT = "OUTPUT"

    NAME = "export_sites"
    COMMAND = "export"
    DISPLAY_NAME = "Export sites"
    GROUP = "Sites and targets"
    GROUP_ID = "sites"
    TAGS = ("sites", "export", "csv", "kml", "geojson", "jmars", "targets", "observation request")
    HELP_DOC = "docs/sites.md#exports"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterFile(self.INPUT, "Sites (GeoPackage from Site history)", FILE, extension="gpkg")
        )
        self.addParameter(
            QgsProcessingParameterEnum(self.FORMAT, "Format", options=["CSV (JMARS)", "KML", "GeoJSON"], defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(self.OBSERVATIONS, "The site_observations table instead (CSV only)", False)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT,
                "Exported file (empty: beside the sites file)",
                "CSV (*.csv);;KML (*.kml);;GeoJSON (*.geojson *.json)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputNumber("SITES", "Sites exported"))

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        sites = self.parameterAsFile(parameters, self.INPUT, context)
        fmt = FORMATS[self.parameterAsEnum(parameters, self.FORMAT, context)]
        observations = self.parameterAsBoolean(parameters, self.OBSERVATIONS, context)
        output = (
            self.parameterAsFileOutput(parameters, self.OUTPUT, context) if self.is_set(parameters, self.OUTPUT) else ""
        )
        if observations and fmt != "csv":
            raise QgsProcessingException("The site_observations table is exported as CSV only; choose CSV (JMARS)")
        args = [self.COMMAND, sites, "--format", fmt]
        args += ["-o", output] if output else []
        args += ["--observations"] if observations else []
        return args

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        written = outputs.get("OUTPUT")
        if written and Path(written).suffix.lower() in (".kml", ".geojson", ".json"):  # maps: shown in the run's group
            queue_layer(context, str(written), f"Exported sites: {Path(written).name}", self.run_group(str(written)))
        return {self.OUTPUT: written, "SITES": outputs.get("sites")}
