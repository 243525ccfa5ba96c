"""Processing algorithm ``marsice:search``: find HiRISE products by latitude band and season."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..compat import DOUBLE, POLYGONS
from ..layers import queue_geopackage
from .base import MarsIceAlgorithm

PRODUCTS = ["RED", "COLOR", "DTM"]
RULES = ["centre", "intersect"]
SOURCES = ["auto", "ode", "bundled"]


class SearchProductsAlgorithm(MarsIceAlgorithm):
    """``marsice search`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    LAT_MIN = "LAT_MIN"
    LAT_MAX = "LAT_MAX"
    LS_FROM = "LS_FROM"
    LS_TO = "LS_TO"
    LAT_RULE = "LAT_RULE"
    PRODUCT = "PRODUCT"
    SOURCE = "SOURCE"
    MARS_YEARS = "MARS_YEARS"
    DTM = "DTM"
    OUTPUT = "OUTPUT"

    NAME = "search"
    COMMAND = "search"
    DISPLAY_NAME = "Search HiRISE products"
    GROUP = "Catalogue"
    GROUP_ID = "catalogue"
    ICON = "catalogue.svg"
    TAGS = ("search", "catalogue", "ode", "footprints", "season", "solar longitude", "latitude", "dtm")
    HELP_DOC = "README.md#search-and-download"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        for key, label, default, lo, hi in (
            (self.LAT_MIN, "Latitude band: from (°N)", -60.0, -90.0, 90.0),
            (self.LAT_MAX, "Latitude band: to (°N)", -40.0, -90.0, 90.0),
            (self.LS_FROM, "Solar longitude Ls: from (°)", 140.0, 0.0, 360.0),
            (self.LS_TO, "Solar longitude Ls: to (°)", 200.0, 0.0, 360.0),
        ):
            self.addParameter(
                QgsProcessingParameterNumber(key, label, DOUBLE, defaultValue=default, minValue=lo, maxValue=hi)
            )
        self.addParameter(QgsProcessingParameterEnum(self.LAT_RULE, "Latitude rule", options=RULES, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.PRODUCT, "Product", options=PRODUCTS, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.SOURCE, "Catalogue", options=SOURCES, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterString(self.MARS_YEARS, "Mars Years (e.g. 29 30; empty = all)", optional=True)
        )
        self.addParameter(QgsProcessingParameterBoolean(self.DTM, "Pair with HiRISE DTMs (needs ODE)", False))
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Product footprints", POLYGONS))

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        number = {
            k: self.parameterAsDouble(parameters, k, context)
            for k in (self.LAT_MIN, self.LAT_MAX, self.LS_FROM, self.LS_TO)
        }
        rule = RULES[self.parameterAsEnum(parameters, self.LAT_RULE, context)]
        product = PRODUCTS[self.parameterAsEnum(parameters, self.PRODUCT, context)]
        source = SOURCES[self.parameterAsEnum(parameters, self.SOURCE, context)]
        years = self.parameterAsString(parameters, self.MARS_YEARS, context).replace(",", " ").split()
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)

        args = [self.COMMAND, "--lat", str(number[self.LAT_MIN]), str(number[self.LAT_MAX])]
        args += ["--ls", str(number[self.LS_FROM]), str(number[self.LS_TO])]
        args += ["--lat-rule", rule, "--product", product, "--source", source, "--table", "0", "-o", output]
        args += ["--mars-year", *years] if years else []
        args += ["--dtm"] if self.parameterAsBoolean(parameters, self.DTM, context) else []
        return args

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        queue_geopackage(context, output, self.run_group(output), replace=output)
        return {self.OUTPUT: output}
