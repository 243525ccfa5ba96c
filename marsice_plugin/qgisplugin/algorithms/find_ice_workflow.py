"""Processing algorithm ``marsice:scan``: search → download → detect → terrain for a latitude band and season."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..compat import DOUBLE, FOLDER, INTEGER, POLYGONS, mark_advanced
from ..layers import drop_pending, queue_geopackage
from .base import MarsIceAlgorithm
from .parameters import (
    add_footprints_layer_parameter,
    add_model_parameters,
    add_search_parameters,
    add_source_parameter,
    footprint_ids,
    model_args,
    search_args,
    source_arg,
    threshold_args,
)

#: The workflow's download cap (GB) until the user raises it.
DEFAULT_MAX_GB = 20.0


class FindIcePatchesAlgorithm(MarsIceAlgorithm):
    """``marsice scan`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    DRY_RUN = "DRY_RUN"
    MAX_GB = "MAX_GB"
    ALLOW_UNKNOWN_SIZE = "ALLOW_UNKNOWN_SIZE"
    LIMIT = "LIMIT"
    TERRAIN = "TERRAIN"
    CACHE = "CACHE"
    CACHE_GB = "CACHE_GB"
    WORKERS = "WORKERS"
    ODE_URL = "ODE_URL"
    KEEP_DOWNLOADS = "KEEP_DOWNLOADS"
    OUTPUT = "OUTPUT"
    PRODUCTS = "PRODUCTS"
    COMMITTED = "COMMITTED"
    FAILED = "FAILED"
    CANDIDATES = "CANDIDATES"
    DOWNLOAD_GB = "DOWNLOAD_GB"
    MANIFEST = "MANIFEST"

    NAME = "scan"
    COMMAND = "scan"
    DISPLAY_NAME = "Find ice patches (workflow)"
    GROUP = "Workflows"
    GROUP_ID = "workflows"
    ICON = "workflow.svg"
    TAGS = ("ice", "workflow", "search", "download", "detection", "terrain", "season", "latitude")
    HELP_DOC = "docs/scan.md"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        add_search_parameters(self)
        add_source_parameter(self)
        add_footprints_layer_parameter(self, "Only the products of a footprint layer (tick 'Selected features only')")
        # Safe defaults: a first run only lists what it would fetch, and a real one stops before pulling more than
        # DEFAULT_MAX_GB. Both are changed on purpose (the band's 1,409 products are several hundred GB).
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.DRY_RUN, "Dry run (list products and download size only; untick to download)", True
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_GB, "Download cap (GB; raise it on purpose for a larger run)", DOUBLE, DEFAULT_MAX_GB,
                minValue=0.0001,
            )
        )  # fmt: skip
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterBoolean(
                    self.ALLOW_UNKNOWN_SIZE, "Start even when some download sizes are unknown", False
                )
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.LIMIT, "Products at most (0 = all)", INTEGER, 0, minValue=0)
        )
        add_model_parameters(self)
        self.addParameter(QgsProcessingParameterBoolean(self.TERRAIN, "Terrain attributes from HiRISE DTMs", True))
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterFile(self.CACHE, "Download cache (empty = default)", FOLDER, optional=True)
            )
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterNumber(self.CACHE_GB, "Cache size limit (GB)", DOUBLE, 50.0, minValue=0.001)
            )
        )
        self.addParameter(
            mark_advanced(QgsProcessingParameterNumber(self.WORKERS, "Parallel workers", INTEGER, 2, minValue=1))
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterString(self.ODE_URL, "ODE REST address (empty = public ODE)", "", optional=True)
            )
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterBoolean(self.KEEP_DOWNLOADS, "Keep each product's images after detection", False)
            )
        )
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Ice patch results", POLYGONS))
        for name, label in (
            (self.PRODUCTS, "Products found"),
            (self.COMMITTED, "Products done"),
            (self.FAILED, "Products failed"),
            (self.CANDIDATES, "Ice candidates"),
            (self.DOWNLOAD_GB, "Download (GB)"),
        ):
            self.addOutput(QgsProcessingOutputNumber(name, label))
        self.addOutput(QgsProcessingOutputFile(self.MANIFEST, "Scan manifest (resume record)"))

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        max_gb = self.parameterAsDouble(parameters, self.MAX_GB, context)
        limit = self.parameterAsInt(parameters, self.LIMIT, context)
        cache = self.parameterAsFile(parameters, self.CACHE, context)
        ode_url = self.parameterAsString(parameters, self.ODE_URL, context).strip()

        args = [self.COMMAND, *search_args(self, parameters, context), "-o", output]
        args += ["--source", source_arg(self, parameters, context)]
        args += ["--ode-url", ode_url] if ode_url else []
        args += ["--cache", cache] if cache else []
        args += ["--cache-gb", str(self.parameterAsDouble(parameters, self.CACHE_GB, context))]
        args += ["--max-gb", str(max_gb)] if max_gb > 0 else []
        args += (
            ["--allow-unknown-size"] if self.parameterAsBoolean(parameters, self.ALLOW_UNKNOWN_SIZE, context) else []
        )
        args += ["--dry-run"] if self.parameterAsBoolean(parameters, self.DRY_RUN, context) else []
        args += ["--limit", str(limit)] if limit > 0 else []
        chosen = footprint_ids(self, parameters, context)
        args += ["--products", *chosen] if chosen else []
        args += ["--workers", str(self.parameterAsInt(parameters, self.WORKERS, context))]
        args += model_args(self, parameters, context) + threshold_args(self, parameters, context)
        args += [] if self.parameterAsBoolean(parameters, self.TERRAIN, context) else ["--no-terrain"]
        args += ["--keep-downloads"] if self.parameterAsBoolean(parameters, self.KEEP_DOWNLOADS, context) else []
        return args

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        written = outputs.get("OUTPUT")
        if written and Path(str(written)).is_file():
            queue_geopackage(context, str(written), self.run_group(output), replace=output)
        else:  # a dry run writes nothing: there is no layer to open
            drop_pending(context, output)
        return {
            self.OUTPUT: written or None,
            self.PRODUCTS: outputs.get("products"),
            self.COMMITTED: outputs.get("committed"),
            self.FAILED: outputs.get("failed"),
            self.CANDIDATES: outputs.get("candidates"),
            self.DOWNLOAD_GB: outputs.get("download_gb"),
            self.MANIFEST: outputs.get("MANIFEST"),
        }
