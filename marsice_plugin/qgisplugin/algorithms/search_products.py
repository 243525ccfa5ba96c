"""Processing algorithm ``marsice:search``: find HiRISE products by latitude band and season."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
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

_HELP = """\
<p>Finds <b>HiRISE map-projected products</b> (RDRs) taken in a latitude band during a season, and draws \
their <b>footprints</b> on the map, one polygon per product with its time, Mars Year, solar longitude \
(L<sub>s</sub>), lighting and download links.</p>
<p>The paper's selection is latitude −60° to −40° at L<sub>s</sub> 140°–200° (southern late winter to \
spring, when seasonal frost retreats and remnant ice patches survive in shadows).</p>
<h3>Parameters</h3>
<dl>
<dt>Latitude band</dt><dd>Planetocentric degrees, south negative.</dd>
<dt>Solar longitude</dt><dd>Season, 0–360°. The range may wrap through 0 (e.g. 340 to 20).</dd>
<dt>Latitude rule</dt><dd><i>centre</i>: the image centre lies in the band (the paper's rule); \
<i>intersect</i>: any part of the image reaches into it.</dd>
<dt>Product</dt><dd>RED (the full-width grey image used for detection), COLOR (the narrow central colour \
strip) or DTM (HiRISE terrain models).</dd>
<dt>Catalogue</dt><dd><i>bundled</i>: the offline catalogue shipped with MarsIce (COLOR index; RED outlines \
are drawn from the COLOR strip and flagged approximate, no download sizes); <i>ode</i>: the live PDS Orbital \
Data Explorer (exact outlines and sizes); <i>auto</i>: ODE, or the bundled catalogue when offline.</dd>
</dl>
<p>Check the total download size in the log before downloading: a RED image is often 0.5–3 GB.</p>
"""


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
    DISPLAY_NAME = "Search HiRISE products"
    GROUP = "Catalogue"
    GROUP_ID = "catalogue"
    HELP = _HELP
    ICON = "catalogue.svg"

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

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        number = {
            k: self.parameterAsDouble(parameters, k, context)
            for k in (self.LAT_MIN, self.LAT_MAX, self.LS_FROM, self.LS_TO)
        }
        rule = RULES[self.parameterAsEnum(parameters, self.LAT_RULE, context)]
        product = PRODUCTS[self.parameterAsEnum(parameters, self.PRODUCT, context)]
        source = SOURCES[self.parameterAsEnum(parameters, self.SOURCE, context)]
        years = self.parameterAsString(parameters, self.MARS_YEARS, context).replace(",", " ").split()
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)

        args = ["search", "--lat", str(number[self.LAT_MIN]), str(number[self.LAT_MAX])]
        args += ["--ls", str(number[self.LS_FROM]), str(number[self.LS_TO])]
        args += ["--lat-rule", rule, "--product", product, "--source", source, "--table", "0", "-o", output]
        args += ["--mars-year", *years] if years else []
        args += ["--dtm"] if self.parameterAsBoolean(parameters, self.DTM, context) else []
        self.run_cli(args, feedback)
        queue_geopackage(context, output, self.run_group(output), replace=output)
        return {self.OUTPUT: output}
