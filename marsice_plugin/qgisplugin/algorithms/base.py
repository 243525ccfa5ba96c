"""Base class of the MarsIce algorithms: parameters → ``marsice`` argv, run it, CLI outputs → results.

The shape follows QGIS's own GDAL algorithms: each algorithm only maps its parameters onto a command line
(:meth:`MarsIceAlgorithm.cli_args`, GDAL's ``getConsoleCommands``) and the CLI's reported outputs onto its
results (:meth:`MarsIceAlgorithm.cli_results`); :meth:`MarsIceAlgorithm.processAlgorithm`, written once
here, runs the command. So the command can be previewed (:meth:`MarsIceAlgorithm.console_command`) and
tested without running anything, and every algorithm reports progress, cancels and fails the same way.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

from qgis.core import QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtGui import QIcon

from ... import child_process
from ...errors import MarsIceError
from ..feedback import FeedbackThrottle
from ..help import doc_url, help_html
from ..settings import marsice_python

#: The plugin's SVG icons, one per toolbox group.
ICONS = Path(__file__).resolve().parents[2] / "icons"

#: Destination parameter types whose value is a layer Processing may queue for loading: resolved with
#: ``parameterAsOutputLayer``, which does the queueing. Every other destination is a file or folder path.
_LAYER_DESTINATIONS = {"vectorDestination", "rasterDestination", "sink"}

#: Tags every MarsIce algorithm is found by in the toolbox search, beside its own.
_COMMON_TAGS = ("marsice", "mars", "hirise")


def push_feedback(feedback: QgsProcessingFeedback, level: str, text: str) -> None:
    """One line into QGIS's log at its level ("progress" is the progress text, which the dialog logs too)."""
    if level == "progress":
        feedback.setProgressText(text)
    elif level == "warning":
        # pushWarning (QGIS >= 3.20) is shown as a warning; reportError(fatalError=False)
        # would print "ERROR:" in qgis_process for something that did not fail.
        if hasattr(feedback, "pushWarning"):
            feedback.pushWarning(text)
        else:
            feedback.reportError(text, False)
    elif level == "debug":
        feedback.pushDebugInfo(text)
    else:
        feedback.pushInfo(text)


def command_line(args: list[str]) -> str:
    """``marsice <args>`` quoted for a shell, so a logged command can be pasted into a terminal."""
    return shlex.join(["marsice", *args])


class MarsIceAlgorithm(QgsProcessingAlgorithm):
    """Shared plumbing: an algorithm holds its parameter names, ``initAlgorithm``, ``cli_args`` and ``cli_results``.

    All the work happens in a child process of MarsIce's own Python (see
    :mod:`marsice_plugin.child_process`), so this class holds no state and runs fine in Processing's
    background thread.
    """

    #: Set by each algorithm: id within the provider, the ``marsice`` sub-command it runs, toolbox name and
    #: group, icon file, search tags and the repository document its help button opens.
    NAME = ""
    COMMAND = ""
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    ICON = "marsice.svg"
    TAGS: tuple[str, ...] = ()
    HELP_DOC = "README.md#qgis"

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

    def tags(self) -> list[str]:
        return [*self.TAGS, *_COMMON_TAGS]

    def shortHelpString(self) -> str:
        """The file ``help/<name>.html`` beside the algorithms, with its links into the docs made absolute."""
        return help_html(self.NAME)

    def helpUrl(self) -> str:
        """The README section or doc of this tool in the MarsIce checkout ('' hides the help button)."""
        return doc_url(self.HELP_DOC)

    def icon(self) -> QIcon:
        return QIcon(self.svgIconPath())

    def svgIconPath(self) -> str:
        return str(ICONS / self.ICON)

    def commandName(self) -> str:
        """The program and sub-command this algorithm runs, as GDAL's algorithms name theirs."""
        return f"marsice {self.COMMAND}"

    # -- what each algorithm writes -----------------------------------------------------------------------

    def cli_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> list[str]:
        """The ``marsice`` argv (sub-command first) for these parameters: a pure mapping, nothing is run.

        Raises QgsProcessingException for parameters that cannot go together.
        """
        raise NotImplementedError(f"{type(self).__name__} must map its parameters onto a marsice command")

    def cli_results(
        self, parameters: dict[str, Any], context: QgsProcessingContext, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        """The algorithm's results from the ``outputs`` the CLI reported; also queues the layers to load.

        ``parameters`` holds the destinations already resolved to the paths the CLI wrote. The default
        returns those destinations, as QGIS's GDAL algorithms do.
        """
        return {d.name(): parameters.get(d.name()) for d in self.destinationParameterDefinitions()}

    # -- shared --------------------------------------------------------------------------------------------

    def resolved(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """``parameters`` with every given destination turned into the path it names, once.

        Processing makes up a new temporary path on every ``parameterAs...`` call for an output left at
        "temporary", and queues a layer to load on each: resolving once makes the argv and the results name
        the same file, and queue it once.
        """
        resolved = dict(parameters)
        for definition in self.destinationParameterDefinitions():
            name = definition.name()
            if not self.is_set(parameters, name):
                continue
            if definition.type() in _LAYER_DESTINATIONS:
                resolved[name] = self.parameterAsOutputLayer(parameters, name, context)
            else:
                resolved[name] = self.parameterAsFileOutput(parameters, name, context)
        return resolved

    def console_command(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        """The command line these parameters run, quoted for a shell, as the log shows it before a run.

        A preview: an output left "temporary" shows a temporary path made up for this call.
        """
        return command_line(self.cli_args(parameters, context))

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Build the argv, log it, run it in MarsIce's Python, and turn its outputs into results."""
        feedback = feedback or QgsProcessingFeedback()  # None when run without one (QgsProcessingAlgorithm.run)
        parameters = self.resolved(parameters, context)
        args = self.cli_args(parameters, context)
        feedback.pushCommandInfo(command_line(args))
        outputs = self.run_cli(args, feedback)
        return self.cli_results(parameters, context, outputs)

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
        venv, cancel) becomes a QgsProcessingException carrying the error's class name and the CLI's
        own message, which already says what to do.
        """

        if feedback is None:
            feedback = QgsProcessingFeedback()

        throttle = FeedbackThrottle()  # a few texts and lines per stage; the bar gets every percent

        def on_event(event: dict[str, Any]) -> None:
            kind = event.get("type")
            message = str(event.get("message", ""))
            lines: list[tuple[str, str]] = []
            if kind == "progress":
                feedback.setProgress(float(event.get("percent", 0.0)))
                lines = throttle.progress(message)
            elif kind == "log":
                lines = throttle.log(str(event.get("level", "info")), message)
            elif kind in ("result", "error"):
                lines = throttle.finish()
                if kind == "result" and event.get("summary"):
                    lines.append(("info", str(event["summary"])))
            for level, text in lines:
                push_feedback(feedback, level, text)

        try:
            python = marsice_python(feedback)  # on a ZIP install's first run, sets the environment up first
            feedback.pushDebugInfo(f"MarsIce Python: {python}")
            return child_process.run_marsice(args, on_event, feedback.isCanceled, python=python)
        except MarsIceError as exc:
            raise QgsProcessingException(child_process.error_text(exc)) from exc
