"""Processing algorithm ``marsice:detect``: score a HiRISE product chunk by chunk for ice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
)

from ..compat import DOUBLE, FILE, POLYGONS, mark_advanced
from ..layers import queue_geopackage
from .base import MarsIceAlgorithm

PRECISIONS = ["float32", "mixed_float16", "mixed_bfloat16"]
#: Read level choices; the first leaves the level to the model card (``--read-level`` omitted), the others are 0, 1, 2.
READ_LEVELS = [
    "As the model was trained (its card)",
    "0: every pixel",
    "1: half resolution",
    "2: quarter resolution",
]

INPUT_FILTER = (
    "HiRISE PDS3 labels and rasters (*.LBL *.lbl *.JP2 *.jp2 *.IMG *.img *.tif *.tiff *.cub *.vrt);;All files (*.*)"
)

_HELP = """\
<p>Searches one HiRISE image for bright patches consistent with <b>remnant seasonal ice</b>, using the \
small Xception-style CNN of Gergácz &amp; Kereszturi.</p>
<p>The image is cut into square <b>chunks of 1024 × 1024 pixels</b> (about 256 m on a side at \
25 cm/pixel). The network gives each chunk a <b>probability</b> (0–1) that it shows an ice patch. \
Inside the chunks at or above the threshold, bright patches are outlined as <b>ice candidates</b>.</p>
<p>Candidates are <i>bright patches consistent with remnant ice</i>: a single grey (RED) band cannot \
tell water ice from CO<sub>2</sub> frost or from other bright material, so check candidates against \
season (solar longitude), latitude and colour or spectral data before calling them water ice.</p>
<h3>Parameters</h3>
<dl>
<dt>HiRISE product</dt><dd>A PDS3 label (<tt>.LBL</tt>) of a map-projected HiRISE RDR with its \
<tt>.JP2</tt> image beside it, or any GDAL raster already in a Mars coordinate reference system.</dd>
<dt>CNN model</dt><dd>A Keras <tt>.keras</tt> model file. Leave empty to use the model shipped with \
MarsIce (trained on generated scenes only, see models/marsice_ensemble_512_level1.md: the mean of two networks, \
one reading the image at half and one at a quarter of its resolution; fine-tune them on chunks you labelled with \
<i>Train model</i> before trusting them for science).</dd>
<dt>Fast model</dt><dd>Use the quarter-resolution network of the shipped model alone: about 4.5× faster per chunk, \
for surveys of many images, at some cost in ranking small patches. Ignored when a CNN model is given.</dd>
<dt>Probability threshold</dt><dd>Chunks scoring at or above it are flagged as candidates. Empty (the \
default): the model's own threshold from its card, 0.35 for the shipped model (chosen on tuning scenes so that \
ice images are rarely missed: on 60 generated test images it found 28 of 30 ice images, against 21 at the \
paper's 0.6), 0.6 for a model whose card names none. Lower it to miss fewer faint patches at the cost of more \
false alarms.</dd>
<dt>Overlap chunks</dt><dd>The paper cut images into chunks that do not overlap, so a patch on a chunk \
edge was seen in two halves and often missed. Ticked (the default), neighbouring chunks overlap by enough (32 m) \
that every patch up to 32 m across lies whole in one of them (more chunks to score, about 1.3× on a full-size \
image). On generated test scenes the shipped model then found 10 of 12 edge-cut patches, as many as of the \
patches inside a chunk, against 4 of 12 with the paper's tiling (unticked).</dd>
<dt>Probability raster</dt><dd>Optional GeoTIFF of the chunk probabilities on the image grid (overlaps blended \
smoothly), to style or sample in QGIS.</dd>
<dt>Compute precision</dt><dd>(Advanced) <i>mixed_float16</i> speeds up NVIDIA GPUs, <i>mixed_bfloat16</i> recent \
CPUs; probabilities move by less than 0.01. Keep <i>float32</i> unless speed matters.</dd>
<dt>Read level</dt><dd>(Advanced) How much of the JPEG2000 image is decoded: every pixel, or a reduced \
resolution level (a quarter of the pixels per level: faster, since decoding is most of the work). A model only \
scores well at the level it was trained at, which its model card records; keep the default unless you are \
comparing levels.</dd>
<dt>Ice probability chunks</dt><dd>GeoPackage to write (an existing one gains this product, or has its \
earlier rows of it replaced). Three layers open styled, grouped per run: <tt>ice_candidates</tt> (patch \
outlines in magenta, with area, probability and brightness contrast), <tt>chunks</tt> (one square per chunk, \
coloured by probability) and <tt>products</tt> (the image footprint with the paper's summary: no, one or \
several chunks above the threshold). Coordinates are latitude/longitude on the Mars sphere \
(IAU_2015:49900), so results of many products share one layer.</dd>
<dt>Quick-look image</dt><dd>Optional PNG: a reduced view of the image with the candidate chunks \
outlined, for a fast visual check.</dd>
</dl>
<p>The computation runs in MarsIce's own Python environment (created by <tt>make setup</tt>); set its \
location in Processing ▸ Options ▸ Providers ▸ MarsIce if it is not found.</p>
"""


class DetectIceAlgorithm(MarsIceAlgorithm):
    """``marsice detect`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    INPUT = "INPUT"
    MODEL = "MODEL"
    FAST = "FAST"
    THRESHOLD = "THRESHOLD"
    OUTPUT = "OUTPUT"
    QUICKLOOK = "QUICKLOOK"
    OVERLAP = "OVERLAP"
    PROBABILITY = "PROBABILITY"
    PRECISION = "PRECISION"
    READ_LEVEL = "READ_LEVEL"

    NAME = "detect"
    DISPLAY_NAME = "Detect ice patches"
    GROUP = "Detection"
    GROUP_ID = "detection"
    HELP = _HELP
    ICON = "detection.svg"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                self.INPUT,
                "HiRISE product (PDS3 .LBL with its .JP2, or a Mars raster)",
                FILE,
                fileFilter=INPUT_FILTER,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL,
                "CNN model (.keras; empty = the shipped model)",
                FILE,
                extension="keras",
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterBoolean(self.FAST, "Fast model (shipped model only)", False))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD,
                "Probability threshold for candidates (empty: the model's own)",
                DOUBLE,
                defaultValue=None,
                optional=True,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(self.OVERLAP, "Overlap chunks (patches on chunk edges seen whole)", True)
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterEnum(self.PRECISION, "Compute precision", options=PRECISIONS, defaultValue=0)
            )
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterEnum(self.READ_LEVEL, "Read level", options=READ_LEVELS, defaultValue=0)
            )
        )
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Ice probability chunks", POLYGONS))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.PROBABILITY,
                "Probability raster",
                "GeoTIFF (*.tif)",
                optional=True,
                createByDefault=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.QUICKLOOK,
                "Quick-look image",
                "PNG images (*.png)",
                optional=True,
                createByDefault=False,
            )
        )

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        product = self.parameterAsFile(parameters, self.INPUT, context)
        model = self.parameterAsFile(parameters, self.MODEL, context)
        threshold = self.optional_double(parameters, self.THRESHOLD, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        quicklook = self.parameterAsFileOutput(parameters, self.QUICKLOOK, context)
        raster = self.parameterAsFileOutput(parameters, self.PROBABILITY, context)
        precision = PRECISIONS[self.parameterAsEnum(parameters, self.PRECISION, context)]
        read_level = self.parameterAsEnum(parameters, self.READ_LEVEL, context) - 1  # -1: the model card's

        args = ["detect", product, "-o", output]
        args += ["--threshold", str(threshold)] if threshold is not None else []
        fast = self.parameterAsBoolean(parameters, self.FAST, context)
        args += ["--model", model] if model else ["--fast"] if fast else []
        args += ["--quicklook", quicklook] if quicklook else []
        args += [] if self.parameterAsBoolean(parameters, self.OVERLAP, context) else ["--overlap", "0"]
        args += ["--probability-raster", raster] if raster else []
        args += ["--precision", precision] if precision != "float32" else []
        args += ["--read-level", str(read_level)] if read_level >= 0 else []
        self.run_cli(args, feedback)
        if Path(output).is_file():
            queue_geopackage(context, output, self.run_group(output), replace=output)
        return {self.OUTPUT: output, self.QUICKLOOK: quicklook or None, self.PROBABILITY: raster or None}
