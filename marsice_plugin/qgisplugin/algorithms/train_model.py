"""Processing algorithm ``marsice:train``: train the paper's small Xception on labelled or generated chunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputFile,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..compat import DOUBLE, FILE, INTEGER
from .base import MarsIceAlgorithm
from .parameters import add_labelled_data_parameters, labelled_data_args

AUGMENTS = ["sun", "none"]
#: Read level choices, index = the level passed as ``--read-level`` (0 is the CLI's default and is not passed).
READ_LEVELS = [
    "0: chunks at full resolution",
    "1: half resolution",
    "2: quarter resolution (Tile product at scale 0.25; the shipped fast model)",
]


class TrainModelAlgorithm(MarsIceAlgorithm):
    """``marsice train`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    SYNTHETIC = "SYNTHETIC"
    INPUT_SIZE = "INPUT_SIZE"
    EPOCHS = "EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    VALIDATION_SPLIT = "VALIDATION_SPLIT"
    SEED = "SEED"
    AUGMENT = "AUGMENT"
    INIT = "INIT"
    READ_LEVEL = "READ_LEVEL"
    LEARNING_RATE = "LEARNING_RATE"
    KEEP_BEST = "KEEP_BEST"
    OUTPUT = "OUTPUT"
    CURVES = "CURVES"

    NAME = "train"
    COMMAND = "train"
    DISPLAY_NAME = "Train model"
    GROUP = "Training and evaluation"
    GROUP_ID = "model"
    ICON = "model.svg"
    TAGS = ("cnn", "xception", "training", "fine-tune", "keras", "model")
    HELP_DOC = "README.md#training-and-evaluating-the-cnn"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        add_labelled_data_parameters(self)
        for key, label, default, minimum in (
            (self.SYNTHETIC, "Generated chunks instead of labelled ones (0 = none)", 0, 0),
            (self.INPUT_SIZE, "Model input size (pixels)", 256, 32),
            (self.EPOCHS, "Epochs", 25, 1),
            (self.BATCH_SIZE, "Batch size", 25, 1),
            (self.SEED, "Seed", 0, 0),
        ):
            self.addParameter(QgsProcessingParameterNumber(key, label, INTEGER, defaultValue=default, minValue=minimum))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.VALIDATION_SPLIT, "Validation share", DOUBLE, defaultValue=0.2, minValue=0.0, maxValue=0.9
            )
        )
        self.addParameter(QgsProcessingParameterEnum(self.AUGMENT, "Augmentation", options=AUGMENTS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterEnum(self.READ_LEVEL, "Read level of the chunks", options=READ_LEVELS, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.LEARNING_RATE, "Learning rate", DOUBLE, defaultValue=1e-3, minValue=1e-6, maxValue=1.0
            )
        )
        self.addParameter(QgsProcessingParameterBoolean(self.KEEP_BEST, "Keep the best epoch", False))
        self.addParameter(
            QgsProcessingParameterFile(
                self.INIT, "Start from model (fine-tune)", FILE, extension="keras", optional=True
            )
        )
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Trained model", "Keras models (*.keras)"))
        self.addOutput(QgsProcessingOutputFile(self.CURVES, "Learning curves (PNG)"))

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        data, label_field = labelled_data_args(
            self, parameters, context, ": train on one, then evaluate the model on the other."
        )
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        synthetic = self.parameterAsInt(parameters, self.SYNTHETIC, context)

        args = [self.COMMAND, *data, "-o", output]
        init = self.parameterAsFile(parameters, self.INIT, context)
        args += ["--synthetic", str(synthetic)] if synthetic > 0 else []
        args += ["--init", init] if init else []
        args += label_field
        sizes = [] if init else [(self.INPUT_SIZE, "--input-size")]  # a start model keeps its own size here
        for key, option in (
            *sizes,
            (self.EPOCHS, "--epochs"),
            (self.BATCH_SIZE, "--batch-size"),
        ):
            args += [option, str(self.parameterAsInt(parameters, key, context))]
        args += ["--validation-split", str(self.parameterAsDouble(parameters, self.VALIDATION_SPLIT, context))]
        args += ["--seed", str(self.parameterAsInt(parameters, self.SEED, context))]
        args += ["--augment", AUGMENTS[self.parameterAsEnum(parameters, self.AUGMENT, context)]]
        args += ["--learning-rate", str(self.parameterAsDouble(parameters, self.LEARNING_RATE, context))]
        read_level = self.parameterAsEnum(parameters, self.READ_LEVEL, context)
        args += ["--read-level", str(read_level)] if read_level else []
        args += ["--keep-best"] if self.parameterAsBool(parameters, self.KEEP_BEST, context) else []
        return args

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        model = str(outputs.get("MODEL", self.parameterAsFileOutput(parameters, self.OUTPUT, context)))
        curves = Path(model).with_suffix(".curves.png")
        return {self.OUTPUT: model, self.CURVES: str(curves) if curves.is_file() else None}
