"""Processing algorithm ``marsice:evaluate``: a model's accuracy on the frozen evaluation set or labelled chunks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..compat import FILE, FOLDER, INTEGER, mark_advanced
from .base import MarsIceAlgorithm
from .parameters import add_labelled_data_parameters, add_threshold_parameter, labelled_data_args, threshold_args

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
    SET = "SET"
    LIMIT = "LIMIT"
    CACHE = "CACHE"
    OUTPUT = "OUTPUT"
    PR_CURVE = "PR_CURVE"

    NAME = "evaluate"
    COMMAND = "evaluate"
    DISPLAY_NAME = "Evaluate model"
    GROUP = "Training and evaluation"
    GROUP_ID = "model"
    ICON = "model.svg"
    TAGS = ("cnn", "model", "accuracy", "precision", "recall", "roc", "evaluation")
    HELP_DOC = "README.md#training-and-evaluating-the-cnn"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(QgsProcessingParameterFile(self.MODEL, "CNN model (.keras)", FILE, extension="keras"))
        add_labelled_data_parameters(self)
        self.addParameter(QgsProcessingParameterString(self.SET, "Evaluation set", "evaluation_set_v1"))
        self.addParameter(
            QgsProcessingParameterNumber(self.LIMIT, "Products to use (0 = all)", INTEGER, defaultValue=0, minValue=0)
        )
        add_threshold_parameter(self, "Probability threshold (empty: the model's own)")
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

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        model = self.parameterAsFile(parameters, self.MODEL, context)
        data, label_field = labelled_data_args(
            self, parameters, context, " (or neither, to use the frozen evaluation set)."
        )
        cache = self.parameterAsFile(parameters, self.CACHE, context) or str(default_cache())
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        pr_curve = self.parameterAsFileOutput(parameters, self.PR_CURVE, context)
        limit = self.parameterAsInt(parameters, self.LIMIT, context)

        args = [self.COMMAND, model, *data, *label_field]
        args += ["--set", self.parameterAsString(parameters, self.SET, context)]
        args += ["--limit", str(limit)] if limit > 0 else []
        args += threshold_args(self, parameters, context)
        args += ["--cache", cache, "-o", output]
        args += ["--pr-curve", pr_curve] if pr_curve else []
        return args

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        pr_curve = self.parameterAsFileOutput(parameters, self.PR_CURVE, context)
        report = outputs.get("report") if isinstance(outputs.get("report"), dict) else {}
        results: dict[str, Any] = {self.OUTPUT: outputs.get("OUTPUT", output), self.PR_CURVE: pr_curve or None}
        for name, _, path in FIGURES:
            results[name] = _figure(report, path)
        return results
