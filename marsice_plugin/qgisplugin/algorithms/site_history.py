"""Processing algorithm ``marsice:site_history``: candidate sites over time, with a plot per site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
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
from ..layers import queue_geopackage
from .base import MarsIceAlgorithm

try:  # QGIS >= 3.36 and QGIS 4
    from qgis.core import Qgis

    _FILES = Qgis.ProcessingSourceType.File
except AttributeError:  # QGIS 3.22 - 3.34
    _FILES = QgsProcessing.TypeFile

CATALOGUES = ["auto", "bundled", "ode", "none"]

_HELP = """\
<p>Follows each <b>ice candidate site through the seasons</b>. Patches outlined in different images of the same \
ground (within the tolerance, in metres) become one <b>site</b> with a stable id built from its position.</p>
<p>For every site, every HiRISE observation whose footprint covers it is listed in the \
<tt>site_observations</tt> table, processed or not, with its time, Mars Year, solar longitude (L<sub>s</sub>), \
local time, incidence, map scale and, where it was processed, whether the patch was outlined and the CNN \
probability. Between consecutive L<sub>s</sub> of the same Mars Year each processed observation is marked \
<i>persisted</i>, <i>disappeared</i>, <i>appeared</i> or <i>still absent</i>; catalogue observations with no \
results yet are <i>not yet processed</i> (write them to the queue file and download them).</p>
<p><b>Absence is not melt</b> when dust or haze hides the ground: observations inside a global dust storm (MY 25, \
MY 28, and MY 34, which began near L<sub>s</sub> 186, inside the paper's L<sub>s</sub> 140°–200° window) and \
low-sun or low-contrast images are flagged, and a non-detection on them carries a caveat.</p>
<p>The <tt>sites</tt> layer gives the number of observations, the L<sub>s</sub> and Mars Year span, the detections, \
the HiRISE web and JP2 links and an L<sub>s</sub> window for a new observation request. Its <tt>plot</tt> \
field links each site's PNG: CNN probability against L<sub>s</sub>, one series per Mars Year (filled: outlined; \
x: dusty or low contrast).</p>
<h3>Parameters</h3>
<dl>
<dt>Detection results</dt><dd>One or more GeoPackages written by <i>Detect ice patches</i> (or the workflow); a \
product found in several is taken from the last one.</dd>
<dt>Same site within</dt><dd>Distance in metres between patch outlines below which they are one site. Take it \
larger than the misregistration of your images (a few metres to tens of metres between HiRISE products).</dd>
<dt>Catalogue</dt><dd>Where observations covering the sites are looked up: <i>auto</i> (ODE, or the bundled \
catalogue when offline), <i>bundled</i> (offline; RED outlines are the narrower COLOR strip, so some coverage is \
missed), <i>ode</i>, or <i>none</i> (processed products only).</dd>
<dt>Footprints</dt><dd>A footprint layer saved by <i>Search HiRISE products</i>, used instead of the catalogue.</dd>
<dt>Plots folder</dt><dd>Where the PNG per site goes; empty: a folder named after the sites file, beside it.</dd>
<dt>Queue</dt><dd>Optional: the observations that cover a site but were never processed, as a footprint \
GeoPackage for <i>Download HiRISE products</i> (or a text file of product ids).</dd>
</dl>
"""


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
    DISPLAY_NAME = "Site history"
    GROUP = "Sites and targets"
    GROUP_ID = "sites"
    HELP = _HELP

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

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        results = [p.split("|", 1)[0] for p in self.parameterAsFileList(parameters, self.INPUT, context)]
        tolerance = self.parameterAsDouble(parameters, self.TOLERANCE_M, context)
        catalogue = CATALOGUES[self.parameterAsEnum(parameters, self.CATALOGUE, context)]
        footprints = self.parameterAsFile(parameters, self.FOOTPRINTS, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        plots = self.parameterAsString(parameters, self.PLOTS, context) if self.is_set(parameters, self.PLOTS) else ""
        plots = plots or str(Path(output).with_name(Path(output).stem + "_plots"))
        queue = self.parameterAsFileOutput(parameters, self.PULL_MISSING, context)

        args = ["sites", *results, "-o", output, "--tolerance-m", str(tolerance), "--catalogue", catalogue]
        args += ["--plots", plots]
        args += ["--footprints", footprints] if footprints else []
        args += ["--pull-missing", queue] if queue else []
        out = self.run_cli(args, feedback)
        loaded = queue_geopackage(context, output, self.run_group(output), replace=output)
        if loaded:  # the observations table too, in the same project (it has no geometry, so no group)
            project = context.layerToLoadOnCompletionDetails(loaded[0]).project
            details = QgsProcessingContext.LayerDetails("Site observations", project, "")
            details.forceName = True
            context.addLayerToLoadOnCompletion(f"{output}|layername=site_observations", details)
        return {
            self.OUTPUT: output,
            "SITES": out.get("sites"),
            "OBSERVATIONS": out.get("observations"),
            "PLOTS_FOLDER": out.get("PLOTS"),
            "QUEUE": out.get("QUEUE"),
        }
