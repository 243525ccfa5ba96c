"""Base class of the MarsIce algorithms: run one ``marsice`` command and relay its events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from qgis.core import QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtGui import QIcon

from ... import child_process
from ...errors import MarsIceError

#: The plugin's SVG icons, one per toolbox group.
ICONS = Path(__file__).resolve().parents[2] / "icons"


class MarsIceAlgorithm(QgsProcessingAlgorithm):
    """Shared plumbing: the algorithms only build an argv and call :meth:`run_cli`.

    All the work happens in a child process of MarsIce's own Python (see
    :mod:`marsice_plugin.child_process`), so this class holds no state and runs fine in Processing's
    background thread.
    """

    #: Set by each algorithm: id within the provider, toolbox name, group, help text and icon file.
    NAME = ""
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""
    ICON = "marsice.svg"

    def createInstance(self) -> MarsIceAlgorithm:
        return type(self)()

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:
        return self.DISPLAY_NAME

    def group(self) -> str:
        return self.GROUP

    def groupId(self) -> str:
        return self.GROUP_ID

    def shortHelpString(self) -> str:
        return self.HELP

    def icon(self) -> QIcon:
        return QIcon(self.svgIconPath())

    def svgIconPath(self) -> str:
        return str(ICONS / self.ICON)

    def run_group(self, output: str) -> str:
        """Layers-panel group for one run: the output's name, the tool and the time, so runs never mix."""
        return f"{Path(output).stem} ({self.DISPLAY_NAME}, {time.strftime('%H:%M:%S')})"

    @staticmethod
    def is_set(parameters: dict[str, Any], name: str) -> bool:
        """Whether an optional parameter was given (None and '' mean 'not set': leave the CLI default)."""
        value = parameters.get(name)
        return value is not None and str(value).strip() != ""

    def optional_double(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> float | None:
        """An optional number, or None when empty (parameterAsDouble would turn 'empty' into 0)."""
        return self.parameterAsDouble(parameters, name, context) if self.is_set(parameters, name) else None

    def run_cli(self, args: list[str], feedback: QgsProcessingFeedback | None) -> dict[str, Any]:
        """Run ``marsice <args>`` with progress, log lines and cancel wired to ``feedback``.

        Returns the ``outputs`` dict the CLI reported. Every MarsIce error (bad product, missing
        venv, cancel) becomes a QgsProcessingException carrying the CLI's own message, which already
        says what to do.
        """
        from ..provider import python_setting  # late: provider imports the algorithms

        if feedback is None:
            feedback = QgsProcessingFeedback()

        def on_event(event: dict[str, Any]) -> None:
            kind = event.get("type")
            message = str(event.get("message", ""))
            if kind == "progress":
                feedback.setProgress(float(event.get("percent", 0.0)))
                if message:
                    feedback.setProgressText(message)
            elif kind == "log":
                level = event.get("level", "info")
                if level == "warning":
                    # pushWarning (QGIS >= 3.20) is shown as a warning; reportError(fatalError=False)
                    # would print "ERROR:" in qgis_process for something that did not fail.
                    if hasattr(feedback, "pushWarning"):
                        feedback.pushWarning(message)
                    else:
                        feedback.reportError(message, False)
                elif level == "debug":
                    feedback.pushDebugInfo(message)
                else:
                    feedback.pushInfo(message)
            elif kind == "result" and event.get("summary"):
                feedback.pushInfo(str(event["summary"]))

        try:
            python = child_process.find_venv_python(python_setting())
            feedback.pushDebugInfo(f"MarsIce Python: {python}")
            feedback.pushDebugInfo("marsice " + " ".join(args))
            return child_process.run_marsice(args, on_event, feedback.isCanceled, python=python)
        except MarsIceError as exc:
            raise QgsProcessingException(str(exc)) from exc
