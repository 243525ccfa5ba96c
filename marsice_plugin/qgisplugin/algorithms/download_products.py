"""Processing algorithm ``marsice:download``: fetch the products of a footprint layer."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..compat import DOUBLE, FILE
from .base import MarsIceAlgorithm

_HELP = """\
<p>Downloads the HiRISE images (<tt>.JP2</tt>) and their labels (<tt>.LBL</tt>) of the products in a \
footprint layer made by <i>Search HiRISE products</i>, or of product ids you type \
(e.g. <tt>ESP_011319_1305_RED</tt>). The label and image land side by side, ready for <i>Detect ice patches</i>.</p>
<p>HiRISE images are large (often 0.5–3 GB each). Use <b>Dry run</b> first to see the sizes, and \
<b>Maximum download</b> to refuse a run that would pull more than you meant to.</p>
<p>The folder is a cache: files already there are not fetched again, broken downloads resume where they \
stopped, and when the folder would exceed its size limit the least recently used files are removed. \
A file only appears once it is complete and its size checked.</p>
<h3>Parameters</h3>
<dl>
<dt>Footprint layer</dt><dd>A GeoPackage written by <i>Search HiRISE products</i>; every product in it is \
fetched (filter the search first to keep the download small).</dd>
<dt>Product ids</dt><dd>Or: HiRISE product ids separated by spaces.</dd>
<dt>Download folder</dt><dd>Where the images go; it doubles as a cache for later runs.</dd>
<dt>Maximum download</dt><dd>Refuse to start when the files still missing add up to more than this (GB).</dd>
<dt>Folder size limit</dt><dd>Least recently used files are removed to stay below it.</dd>
<dt>Dry run</dt><dd>List files and sizes; download nothing.</dd>
<dt>Browse images</dt><dd>Fetch the small browse JPEGs instead of the full images, to look before committing \
gigabytes.</dd>
</dl>
"""


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
    DISPLAY_NAME = "Download HiRISE products"
    GROUP = "Catalogue"
    GROUP_ID = "catalogue"
    HELP = _HELP
    ICON = "catalogue.svg"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                self.INPUT, "Footprint layer from a search (.gpkg)", FILE, extension="gpkg", optional=True
            )
        )
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

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        layer = self.parameterAsFile(parameters, self.INPUT, context)
        ids = self.parameterAsString(parameters, self.PRODUCT_IDS, context).replace(",", " ").split()
        folder = self.parameterAsString(parameters, self.FOLDER, context)
        max_gb = self.parameterAsDouble(parameters, self.MAX_GB, context)
        cache_gb = self.parameterAsDouble(parameters, self.CACHE_GB, context)

        args = ["download", *ids, "--to", folder, "--cache-gb", str(cache_gb)]
        args += ["--from", layer] if layer else []
        args += ["--max-gb", str(max_gb)] if max_gb > 0 else []
        args += ["--dry-run"] if self.parameterAsBoolean(parameters, self.DRY_RUN, context) else []
        args += ["--browse"] if self.parameterAsBoolean(parameters, self.BROWSE, context) else []
        outputs = self.run_cli(args, feedback)
        return {self.FOLDER: folder, self.FILES: int(outputs.get("files", 0))}
