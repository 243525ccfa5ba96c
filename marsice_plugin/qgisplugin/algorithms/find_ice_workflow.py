"""Processing algorithm ``marsice:scan``: search → download → detect → terrain for a latitude band and season."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..compat import DOUBLE, FILE, FOLDER, INTEGER, POLYGONS, mark_advanced
from ..layers import drop_pending, queue_geopackage
from .base import MarsIceAlgorithm
from .search_products import SOURCES

_HELP = """\
<p>The whole search in one go: finds every map-projected <b>HiRISE RED image</b> whose centre lies in a \
<b>latitude band</b> and that was taken in a <b>season</b> (solar longitude range), downloads each, scores it \
for remnant ice patches, and, where a HiRISE DTM covers it, adds <b>slope, aspect and shade</b> to every \
candidate. All results go into <b>one GeoPackage</b> (layers <tt>ice_candidates</tt>, <tt>chunks</tt>, \
<tt>products</tt>) that opens styled, one group per run.</p>
<p>HiRISE images are large (0.5–3 GB each): run a <b>dry run</b> first to see how many products and how many \
gigabytes the search would pull, then set a <b>download cap</b>. A product that fails (download, damaged file) is \
recorded and the run goes on; running the same search into the same GeoPackage again resumes where it stopped \
and skips the products already done.</p>
<p>The paper's selection is latitude −60° to −40° at L<sub>s</sub> 140°–200°. Candidates are <i>bright patches \
consistent with remnant ice</i>, not proof of water ice.</p>
<h3>Parameters</h3>
<dl>
<dt>Latitude band</dt><dd>Planetocentric degrees, south negative.</dd>
<dt>Solar longitude</dt><dd>Season, 0–360°; the range may wrap through 0 (340 to 20).</dd>
<dt>Catalogue</dt><dd><i>ode</i>: the live PDS Orbital Data Explorer; <i>bundled</i>: the offline catalogue \
shipped with MarsIce; <i>auto</i>: ODE, or the bundled one when offline.</dd>
<dt>Dry run</dt><dd>Only list what would be downloaded and its size; nothing is fetched or written.</dd>
<dt>Download cap</dt><dd>Refuse to start when the run would download more than this (GB; 0 = no cap).</dd>
<dt>Products at most</dt><dd>Scan only the first N products found (0 = all): try a few before a long run.</dd>
<dt>CNN model, fast model, probability threshold</dt><dd>As in <i>Detect ice patches</i> (empty model = the \
model shipped with MarsIce; the fast model is about 4.5× faster per chunk, worth it for many images; empty \
threshold = the model's own, from its card; 0.6, the paper's, for a model whose card names none).</dd>
<dt>Terrain attributes</dt><dd>Look for a HiRISE DTM of each product (ODE only) and rank candidates by the \
shade and slope around them.</dd>
<dt>Download cache</dt><dd>Folder for the downloaded images, kept below its size limit by removing the least \
recently used files. Empty: MarsIce's usual cache folder.</dd>
<dt>Parallel workers</dt><dd>Products processed at the same time. Each worker loads its own copy of the CNN and \
reads its own product: raise it only with cores and memory to spare.</dd>
</dl>
"""


class FindIcePatchesAlgorithm(MarsIceAlgorithm):
    """``marsice scan`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    LAT_MIN = "LAT_MIN"
    LAT_MAX = "LAT_MAX"
    LS_FROM = "LS_FROM"
    LS_TO = "LS_TO"
    SOURCE = "SOURCE"
    DRY_RUN = "DRY_RUN"
    MAX_GB = "MAX_GB"
    LIMIT = "LIMIT"
    MODEL = "MODEL"
    FAST = "FAST"
    THRESHOLD = "THRESHOLD"
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
    DISPLAY_NAME = "Find ice patches (workflow)"
    GROUP = "Workflows"
    GROUP_ID = "workflows"
    HELP = _HELP
    ICON = "workflow.svg"

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
        self.addParameter(QgsProcessingParameterEnum(self.SOURCE, "Catalogue", options=SOURCES, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterBoolean(self.DRY_RUN, "Dry run (list products and download size only)", False)
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.MAX_GB, "Download cap (GB; 0 = no cap)", DOUBLE, 0.0, minValue=0.0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.LIMIT, "Products at most (0 = all)", INTEGER, 0, minValue=0)
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL, "CNN model (.keras; empty = the shipped model)", FILE, extension="keras", optional=True
            )
        )
        self.addParameter(QgsProcessingParameterBoolean(self.FAST, "Fast model (shipped model only)", False))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD,
                "Probability threshold for candidates (empty: the model's own)",
                DOUBLE,
                None,
                optional=True,
                minValue=0.0,
                maxValue=1.0,
            )
        )
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

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        lat = [self.parameterAsDouble(parameters, key, context) for key in (self.LAT_MIN, self.LAT_MAX)]
        ls = [self.parameterAsDouble(parameters, key, context) for key in (self.LS_FROM, self.LS_TO)]
        source = SOURCES[self.parameterAsEnum(parameters, self.SOURCE, context)]
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        dry_run = self.parameterAsBoolean(parameters, self.DRY_RUN, context)
        max_gb = self.parameterAsDouble(parameters, self.MAX_GB, context)
        limit = self.parameterAsInt(parameters, self.LIMIT, context)
        model = self.parameterAsFile(parameters, self.MODEL, context)
        cache = self.parameterAsFile(parameters, self.CACHE, context)
        ode_url = self.parameterAsString(parameters, self.ODE_URL, context).strip()

        args = ["scan", "--lat", *map(str, lat), "--ls", *map(str, ls), "-o", output, "--source", source]
        args += ["--ode-url", ode_url] if ode_url else []
        args += ["--cache", cache] if cache else []
        args += ["--cache-gb", str(self.parameterAsDouble(parameters, self.CACHE_GB, context))]
        args += ["--max-gb", str(max_gb)] if max_gb > 0 else []
        args += ["--dry-run"] if dry_run else []
        args += ["--limit", str(limit)] if limit > 0 else []
        args += ["--workers", str(self.parameterAsInt(parameters, self.WORKERS, context))]
        fast = self.parameterAsBoolean(parameters, self.FAST, context)
        args += ["--model", model] if model else ["--fast"] if fast else []
        threshold = self.optional_double(parameters, self.THRESHOLD, context)
        args += ["--threshold", str(threshold)] if threshold is not None else []
        args += [] if self.parameterAsBoolean(parameters, self.TERRAIN, context) else ["--no-terrain"]
        args += ["--keep-downloads"] if self.parameterAsBoolean(parameters, self.KEEP_DOWNLOADS, context) else []

        outputs = self.run_cli(args, feedback)
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
