"""Processing algorithm ``marsice:search``: find HiRISE products by latitude band and season."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..compat import POLYGONS
from ..layers import queue_geopackage
from .base import MarsIceAlgorithm
from .parameters import add_search_parameters, add_source_parameter, search_args, source_arg

PRODUCTS = ["RED", "COLOR", "DTM"]
RULES = ["centre", "intersect"]


class SearchProductsAlgorithm(MarsIceAlgorithm):
    """``marsice search`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    LAT_RULE = "LAT_RULE"
    PRODUCT = "PRODUCT"
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
        add_search_parameters(self)
        self.addParameter(QgsProcessingParameterEnum(self.LAT_RULE, "Latitude rule", options=RULES, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.PRODUCT, "Product", options=PRODUCTS, defaultValue=0))
        add_source_parameter(self)
        self.addParameter(
            QgsProcessingParameterString(self.MARS_YEARS, "Mars Years (e.g. 29 30; empty = all)", optional=True)
        )
        self.addParameter(QgsProcessingParameterBoolean(self.DTM, "Pair with HiRISE DTMs (needs ODE)", False))
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Product footprints", POLYGONS))

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        rule = RULES[self.parameterAsEnum(parameters, self.LAT_RULE, context)]
        product = PRODUCTS[self.parameterAsEnum(parameters, self.PRODUCT, context)]
        source = source_arg(self, parameters, context)
        years = self.parameterAsString(parameters, self.MARS_YEARS, context).replace(",", " ").split()
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)

        args = [self.COMMAND, *search_args(self, parameters, context)]
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
