"""Processing algorithm ``marsice:tile``: cut a product into georeferenced chunks for labelling."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from ..compat import DOUBLE, FILE, INTEGER
from ..layers import queue_geopackage
from .base import MarsIceAlgorithm
from .detect_ice import INPUT_FILTER

_HELP = """\
<p>Cuts one HiRISE image into the same square <b>chunks</b> the detector scores, and writes each chunk as a \
georeferenced GeoTIFF plus a <b>tile index</b> (one outline per chunk) that opens in QGIS. Use it to build \
training data: add a <tt>label</tt> field to the tile index and mark each chunk 1 (holds a remnant ice patch) or \
0 (does not), then give the index to <i>Train model</i>.</p>
<p>Chunks overlap a little so that a patch cut by one chunk edge lies whole inside a neighbour; chunks that are \
mostly outside the image (no-data) are kept in the index, marked as skipped, so you can see why they were left \
out.</p>
<h3>Parameters</h3>
<dl>
<dt>HiRISE product</dt><dd>A PDS3 label (<tt>.LBL</tt>) with its <tt>.JP2</tt>, or any raster in a Mars \
map projection.</dd>
<dt>Chunk size</dt><dd>Side of a chunk in image pixels. 1024 is the paper's (about 256 m at 25 cm/pixel).</dd>
<dt>Overlap</dt><dd>Pixels shared by neighbouring chunks. Empty: enough for a 32 m patch, at most half a \
chunk.</dd>
<dt>Read scale</dt><dd>Fraction of full resolution to read (0.25 reads each 1024 px chunk as 256 px, straight \
from the JPEG2000 overview levels: much faster for a first look).</dd>
<dt>Chunk side in metres</dt><dd>Give chunks a fixed ground size instead of a pixel size (products differ \
in scale).</dd>
<dt>Resample to ground scale</dt><dd>Metres per pixel every chunk is resampled to (e.g. 0.3, the scale of \
the paper's training images), so that a model sees boulders and patches at one size.</dd>
<dt>No-data limits</dt><dd>A chunk is skipped when more than this fraction of its centre, or of the whole \
chunk, lies outside the image.</dd>
<dt>Keep pixels as read</dt><dd>Do not repair saturated or special pixels and isolated bright outliers \
(hot pixels, cosmic-ray hits) before export.</dd>
<dt>Tile index only</dt><dd>Write the outlines but no GeoTIFFs.</dd>
<dt>Replace an earlier tiling</dt><dd>Overwrite a tile index and folder of the same product already in the \
output folder.</dd>
</dl>
"""


class TileProductAlgorithm(MarsIceAlgorithm):
    """``marsice tile`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    INPUT = "INPUT"
    SIZE = "SIZE"
    OVERLAP = "OVERLAP"
    SCALE = "SCALE"
    CHUNK_M = "CHUNK_M"
    MODEL_SCALE = "MODEL_SCALE"
    MAX_CENTER_NODATA = "MAX_CENTER_NODATA"
    MAX_NODATA = "MAX_NODATA"
    NO_REPAIR = "NO_REPAIR"
    INDEX_ONLY = "INDEX_ONLY"
    OVERWRITE = "OVERWRITE"
    OUTPUT = "OUTPUT"
    INDEX = "INDEX"
    TILES = "TILES"
    CHUNKS = "CHUNKS"
    SKIPPED = "SKIPPED"

    NAME = "tile"
    DISPLAY_NAME = "Tile product"
    GROUP = "Training and evaluation"
    GROUP_ID = "model"
    HELP = _HELP
    ICON = "model.svg"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                self.INPUT, "HiRISE product (PDS3 .LBL with its .JP2, or a Mars raster)", FILE, fileFilter=INPUT_FILTER
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.SIZE, "Chunk size (pixels)", INTEGER, defaultValue=1024, minValue=16)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.OVERLAP, "Overlap (pixels; empty = enough for a 32 m patch)", INTEGER, optional=True, minValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SCALE,
                "Read scale (fraction of full resolution)",
                DOUBLE,
                defaultValue=1.0,
                minValue=0.01,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.CHUNK_M, "Chunk side in metres (instead of pixels)", DOUBLE, optional=True, minValue=1.0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MODEL_SCALE,
                "Resample chunks to this ground scale (m/pixel)",
                DOUBLE,
                optional=True,
                minValue=0.01,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_CENTER_NODATA,
                "Skip chunks whose centre is more no-data than (fraction)",
                DOUBLE,
                defaultValue=0.01,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_NODATA,
                "Skip chunks that are more no-data than (fraction)",
                DOUBLE,
                defaultValue=0.5,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(QgsProcessingParameterBoolean(self.NO_REPAIR, "Keep pixels as read (no repair)", False))
        self.addParameter(QgsProcessingParameterBoolean(self.INDEX_ONLY, "Tile index only (no GeoTIFFs)", False))
        self.addParameter(QgsProcessingParameterBoolean(self.OVERWRITE, "Replace an earlier tiling", False))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Output folder"))
        self.addOutput(QgsProcessingOutputVectorLayer(self.INDEX, "Tile index"))
        self.addOutput(QgsProcessingOutputFolder(self.TILES, "Chunk GeoTIFFs folder"))
        self.addOutput(QgsProcessingOutputNumber(self.CHUNKS, "Chunks"))
        self.addOutput(QgsProcessingOutputNumber(self.SKIPPED, "Chunks skipped"))

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        product = self.parameterAsFile(parameters, self.INPUT, context)
        folder = self.parameterAsString(parameters, self.OUTPUT, context)
        args = ["tile", product, "-o", folder, "--size", str(self.parameterAsInt(parameters, self.SIZE, context))]
        if self.is_set(parameters, self.OVERLAP):
            args += ["--overlap", str(self.parameterAsInt(parameters, self.OVERLAP, context))]
        args += ["--scale", str(self.parameterAsDouble(parameters, self.SCALE, context))]
        for key, option in ((self.CHUNK_M, "--chunk-m"), (self.MODEL_SCALE, "--model-scale")):
            value = self.optional_double(parameters, key, context)
            args += [option, str(value)] if value is not None else []
        args += ["--max-center-nodata", str(self.parameterAsDouble(parameters, self.MAX_CENTER_NODATA, context))]
        args += ["--max-nodata", str(self.parameterAsDouble(parameters, self.MAX_NODATA, context))]
        for key, flag in (
            (self.NO_REPAIR, "--no-repair"),
            (self.INDEX_ONLY, "--index-only"),
            (self.OVERWRITE, "--overwrite"),
        ):
            args += [flag] if self.parameterAsBoolean(parameters, key, context) else []

        outputs = self.run_cli(args, feedback)
        index = str(outputs.get("INDEX", ""))
        if index:
            queue_geopackage(context, index, self.run_group(index))
        return {
            self.OUTPUT: folder,
            self.INDEX: index or None,
            self.TILES: outputs.get("TILES"),
            self.CHUNKS: outputs.get("chunks"),
            self.SKIPPED: outputs.get("skipped"),
        }
