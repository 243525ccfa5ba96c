"""Processing algorithm ``marsice:download``: fetch the products of a footprint layer."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..compat import DOUBLE, FILE
from .base import MarsIceAlgorithm
from .parameters import add_footprints_layer_parameter, footprint_ids


class DownloadProductsAlgorithm(MarsIceAlgorithm):
    """``marsice download`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    INPUT = "INPUT"
    PRODUCT_IDS = "PRODUCT_IDS"
    FOLDER = "FOLDER"
    MAX_GB = "MAX_GB"
    CACHE_GB = "CACHE_GB"
    DRY_RUN = "DRY_RUN"
    BROWSE = "BROWSE"
    FILES = "FILES"

    NAME = "download"
    COMMAND = "download"
    DISPLAY_NAME = "Download HiRISE products"
    GROUP = "Catalogue"
    GROUP_ID = "catalogue"
    ICON = "catalogue.svg"
    TAGS = ("download", "jp2", "pds", "cache", "catalogue")
    HELP_DOC = "README.md#search-and-download"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                self.INPUT, "Footprint layer from a search (.gpkg)", FILE, extension="gpkg", optional=True
            )
        )
        add_footprints_layer_parameter(self, "Or: a footprint layer on the map (tick 'Selected features only')")
        self.addParameter(
            QgsProcessingParameterString(self.PRODUCT_IDS, "Product ids (space separated)", optional=True)
        )
        self.addParameter(QgsProcessingParameterFolderDestination(self.FOLDER, "Download folder"))
        self.addParameter(
            QgsProcessingParameterNumber(self.MAX_GB, "Maximum download (GB; 0 = no limit)", DOUBLE, 0.0, minValue=0.0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.CACHE_GB, "Folder size limit (GB)", DOUBLE, 50.0, minValue=0.001)
        )
        self.addParameter(QgsProcessingParameterBoolean(self.DRY_RUN, "Dry run (list files and sizes only)", False))
        self.addParameter(QgsProcessingParameterBoolean(self.BROWSE, "Browse images instead of full images", False))
        self.addOutput(QgsProcessingOutputNumber(self.FILES, "Files downloaded"))

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        layer = self.parameterAsFile(parameters, self.INPUT, context)
        ids = self.parameterAsString(parameters, self.PRODUCT_IDS, context).replace(",", " ").split()
        ids += [i for i in footprint_ids(self, parameters, context) if i not in ids]
        folder = self.parameterAsFileOutput(parameters, self.FOLDER, context)
        max_gb = self.parameterAsDouble(parameters, self.MAX_GB, context)
        cache_gb = self.parameterAsDouble(parameters, self.CACHE_GB, context)

        args = [self.COMMAND, *ids, "--to", folder, "--cache-gb", str(cache_gb)]
        args += ["--from", layer] if layer else []
        args += ["--max-gb", str(max_gb)] if max_gb > 0 else []
        args += ["--dry-run"] if self.parameterAsBoolean(parameters, self.DRY_RUN, context) else []
        args += ["--browse"] if self.parameterAsBoolean(parameters, self.BROWSE, context) else []
        return args

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        folder = self.parameterAsFileOutput(parameters, self.FOLDER, context)
        return {self.FOLDER: folder, self.FILES: int(outputs.get("files", 0))}
