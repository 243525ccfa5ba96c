"""The object QGIS gets from ``classFactory``: registers and removes the Processing provider.

On the desktop it also offers the first-run set-up of a ZIP install (:mod:`marsice_plugin.environment`) as a
background task with its progress in QGIS's task bar, so a user can make the environment before the first tool
run rather than during it; the tools make it themselves otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsTask
from qgis.PyQt.QtWidgets import QPushButton

from .. import child_process
from ..errors import MarsIceError
from .provider import MarsIceProvider
from .settings import environment_dir, environment_needed, set_up_environment


class EnvironmentTask(QgsTask):
    """The set-up child as a QgsTask: its percent on the task's bar, Cancel there kills the child (and pip).

    ``on_done(ok, message)`` is called in the main thread when it ends: the summary, or the error's class name
    and message (docs/errors.md).
    """

    def __init__(self, venv: Path, on_done: Callable[[bool, str], None] | None = None) -> None:
        super().__init__("MarsIce: setting up its Python environment")  # default flags: it can be cancelled
        self.venv = venv
        self.on_done = on_done
        self.message = ""

    def run(self) -> bool:
        """Worker thread: run the child to the end; False (with ``message``) on failure or cancel."""

        def on_event(event: dict[str, Any]) -> None:
            if event.get("type") == "progress":
                self.setProgress(float(event.get("percent", 0.0)))
            elif event.get("type") == "result":
                self.message = str(event.get("summary", ""))

        try:
            set_up_environment(self.venv, on_event, self.isCanceled)
        except MarsIceError as exc:
            self.message = child_process.error_text(exc)
            return False
        return True

    def finished(self, result: bool) -> None:
        """Main thread: hand the outcome on."""
        if self.on_done is not None:
            self.on_done(result, self.message)


class MarsIcePlugin:
    """Plugin wrapper around :class:`MarsIceProvider`.

    ``initProcessing`` is what ``qgis_process`` (no GUI, ``iface`` is None) calls; the desktop calls
    ``initGui``. Both may be called, so registration is idempotent.
    """

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: MarsIceProvider | None = None
        self.task: EnvironmentTask | None = None

    def initProcessing(self) -> None:
        """Register the provider with the Processing registry (once)."""
        if self.provider is None:
            self.provider = MarsIceProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        """Desktop start-up: the Processing algorithms, and the set-up offer while no environment exists."""
        self.initProcessing()
        if self.iface is not None and environment_needed():
            self.offer_setup()

    def offer_setup(self) -> None:
        """A message bar with one button that starts the set-up as a background task."""
        bar = self.iface.messageBar()
        item = bar.createMessage(
            "MarsIce",
            f"needs its Python environment (about 2 GB from the package index, a few minutes) in {environment_dir()}",
        )
        button = QPushButton("Set up now")
        item.layout().addWidget(button)

        def start() -> None:
            bar.popWidget(item)
            self.task = EnvironmentTask(environment_dir(), self.setup_done)
            QgsApplication.taskManager().addTask(self.task)

        button.clicked.connect(start)
        bar.pushWidget(item, Qgis.MessageLevel.Info)

    def setup_done(self, ok: bool, message: str) -> None:
        """The task's outcome on the message bar."""
        self.task = None
        if ok:
            self.iface.messageBar().pushSuccess("MarsIce", message or "environment ready")
        else:
            self.iface.messageBar().pushCritical("MarsIce", message or "the set-up was cancelled")

    def unload(self) -> None:
        """Remove the provider, so that reloading or disabling the plugin leaves nothing behind."""
        if self.task is not None:  # a set-up still running: stop it (it resumes at the next tool run)
            self.task.cancel()
            self.task = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
