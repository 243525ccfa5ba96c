"""Processing algorithm ``marsice:evaluate``: a model's accuracy on the frozen evaluation set or labelled chunks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..compat import DOUBLE, FILE, FOLDER, INTEGER, mark_advanced
from .base import MarsIceAlgorithm

_HELP = """\
<p>Measures how well a CNN model finds <b>remnant ice patches</b>, on chunks whose answer is known, beside a plain \
<b>brightness baseline</b> (does the chunk simply hold the brightest pixels?): a model that cannot beat it has \
learnt brightness, not ice.</p>
<p>Without labelled data the model is scored on MarsIce's <b>frozen evaluation set</b>: generated HiRISE-like \
products with planted ice and exact truth, never used for training. Reported: chunk-level accuracy, \
<b>precision</b> (of the chunks flagged, how many hold ice), <b>recall</b> (of the chunks with ice, how many are \
flagged), NPV (of the chunks not flagged, how many are truly free of ice), ROC-AUC, and the paper's image-level \
summary (images with no, one or several flagged chunks), each with a 95 % interval: the sets are small, and \
the interval says how far a figure could move on another set drawn the same way. The paper's figures come from \
real images and are quoted for context only.</p>
<h3>Parameters</h3>
<dl>
<dt>CNN model</dt><dd>The <tt>.keras</tt> file to judge.</dd>
<dt>Labelled chunks folder / tile index</dt><dd>Optional: your own labelled chunks instead of the evaluation set \
(a folder with <tt>0</tt> and <tt>1</tt> sub-folders, or a tile index from <i>Tile product</i> with a \
label column, named in <i>Label field</i>). Never evaluate on the chunks the model was trained on.</dd>
<dt>Evaluation set</dt><dd>Name of a frozen set shipped with MarsIce: <tt>evaluation_set_v1</tt> (12 \
products, the default), <tt>evaluation_set_v2</tt> (8 products with patches cut by the chunk grid) or \
<tt>evaluation_set_v3</tt> (60 products of v1's kind: narrower intervals, a few minutes longer).</dd>
<dt>Products to use</dt><dd>Only the first N products of the set (0 = all): for a quick check.</dd>
<dt>Probability threshold</dt><dd>Chunks at or above it count as flagged. Empty: the model's own, as \
<i>Detect ice patches</i> uses it; 0.6 gives the paper's image-level summary.</dd>
<dt>Rendered products folder</dt><dd>Where the evaluation set's products are generated once and reused. Empty: a \
folder in your QGIS profile.</dd>
<dt>Report</dt><dd>All figures as JSON.</dd>
<dt>Precision-recall curves</dt><dd>Optional PNG of the model's and the baseline's curves.</dd>
</dl>
"""

#: Figures of the report offered as algorithm outputs (output name, path in the report).
FIGURES = (
    ("ACCURACY", "Chunk accuracy", ("chunks", "accuracy")),
    ("PRECISION", "Chunk precision", ("chunks", "precision")),
    ("RECALL", "Chunk recall", ("chunks", "recall")),
    ("NPV", "Chunk negative predictive value", ("chunks", "npv")),
    ("ROC_AUC", "Chunk ROC-AUC", ("chunks", "roc_auc")),
    ("BASELINE_ROC_AUC", "Brightness baseline ROC-AUC", ("baseline_roc_auc",)),
    ("IMAGE_PRECISION", "Image-level precision", ("images", "precision")),
    ("IMAGE_NPV", "Image-level negative predictive value", ("images", "npv")),
)


def default_cache() -> Path:
    """A per-profile folder for the rendered evaluation set: QGIS's working folder may be anywhere (even
    read-only), and rendering the set again every session would waste minutes."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "marsice" / "evaluation"


def _figure(report: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = report
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, int | float) or math.isnan(value):
        return None  # undefined (e.g. NPV with no chunk left unflagged): NaN would break JSON outputs
    return float(value)


class EvaluateModelAlgorithm(MarsIceAlgorithm):
    """``marsice evaluate`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    MODEL = "MODEL"
    DATA_FOLDER = "DATA_FOLDER"
    TILE_INDEX = "TILE_INDEX"
    LABEL_FIELD = "LABEL_FIELD"
    SET = "SET"
    LIMIT = "LIMIT"
    THRESHOLD = "THRESHOLD"
    CACHE = "CACHE"
    OUTPUT = "OUTPUT"
    PR_CURVE = "PR_CURVE"

    NAME = "evaluate"
    DISPLAY_NAME = "Evaluate model"
    GROUP = "Training and evaluation"
    GROUP_ID = "model"
    HELP = _HELP
    ICON = "model.svg"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(QgsProcessingParameterFile(self.MODEL, "CNN model (.keras)", FILE, extension="keras"))
        self.addParameter(
            QgsProcessingParameterFile(
                self.DATA_FOLDER, "Labelled chunks folder (sub-folders 0/ and 1/)", FOLDER, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.TILE_INDEX, "Labelled tile index (.gpkg from Tile product)", FILE, extension="gpkg", optional=True
            )
        )
        self.addParameter(QgsProcessingParameterString(self.LABEL_FIELD, "Label field of the tile index", "label"))
        self.addParameter(QgsProcessingParameterString(self.SET, "Evaluation set", "evaluation_set_v1"))
        self.addParameter(
            QgsProcessingParameterNumber(self.LIMIT, "Products to use (0 = all)", INTEGER, defaultValue=0, minValue=0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD,
                "Probability threshold (empty: the model's own)",
                DOUBLE,
                defaultValue=None,
                optional=True,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            mark_advanced(
                QgsProcessingParameterFile(
                    self.CACHE, "Rendered products folder (empty = in the QGIS profile)", FOLDER, optional=True
                )
            )
        )
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Report", "JSON files (*.json)"))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.PR_CURVE, "Precision-recall curves", "PNG images (*.png)", optional=True, createByDefault=False
            )
        )
        for name, label, _ in FIGURES:
            self.addOutput(QgsProcessingOutputNumber(name, label))

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        model = self.parameterAsFile(parameters, self.MODEL, context)
        folder = self.parameterAsFile(parameters, self.DATA_FOLDER, context)
        index = self.parameterAsFile(parameters, self.TILE_INDEX, context)
        if folder and index:
            raise QgsProcessingException(
                "Give either a labelled chunks folder or a labelled tile index, not both (or neither, to use the "
                "frozen evaluation set)."
            )
        cache = self.parameterAsFile(parameters, self.CACHE, context) or str(default_cache())
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        pr_curve = self.parameterAsFileOutput(parameters, self.PR_CURVE, context)
        limit = self.parameterAsInt(parameters, self.LIMIT, context)

        args = ["evaluate", model, *[data for data in (folder, index) if data]]
        args += ["--label-field", self.parameterAsString(parameters, self.LABEL_FIELD, context)] if index else []
        args += ["--set", self.parameterAsString(parameters, self.SET, context)]
        args += ["--limit", str(limit)] if limit > 0 else []
        threshold = self.optional_double(parameters, self.THRESHOLD, context)
        args += ["--threshold", str(threshold)] if threshold is not None else []
        args += ["--cache", cache, "-o", output]
        args += ["--pr-curve", pr_curve] if pr_curve else []

        outputs = self.run_cli(args, feedback)
        report = outputs.get("report") if isinstance(outputs.get("report"), dict) else {}
        results: dict[str, Any] = {self.OUTPUT: outputs.get("OUTPUT", output), self.PR_CURVE: pr_curve or None}
        for name, _, path in FIGURES:
            results[name] = _figure(report, path)
        return results
