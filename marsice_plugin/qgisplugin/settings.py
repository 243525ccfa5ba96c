"""Which Python environment runs ``marsice`` (read by the provider and the algorithms), made on first use if none.

A module of its own so the algorithms' base class can read it without importing the provider, which imports
every algorithm. The order: the provider setting, ``MARSICE_PYTHON`` / ``MARSICE_VENV``, a checkout's ``.venv``
(``make setup``), else the plugin's own venv in the QGIS profile (``<profile>/marsice/venv``), which the first
tool run makes (:mod:`marsice_plugin.environment`, as a child process: progress in the tool's dialog, Cancel
kills it, and it resumes where it stopped next time).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qgis.core import QgsApplication, QgsProcessingFeedback, QgsSettings

from .. import child_process, environment
from ..errors import SetupError

#: Name of the provider setting (Processing ▸ Options ▸ Providers ▸ MarsIce ▸ Python environment).
PYTHON_SETTING = "MARSICE_PYTHON"
#: Where Processing stores that setting in the QGIS profile.
PYTHON_SETTING_KEY = "Processing/Configuration/" + PYTHON_SETTING
#: Plain settings key read as a fallback, for set-ups that script the profile without Processing's UI.
PYTHON_FALLBACK_KEY = "marsice/python"


def python_setting() -> str:
    """The user's choice of MarsIce Python environment, or '' to let child_process look it up.

    Read from QgsSettings rather than ProcessingConfig so that it also works when the Processing
    plugin's Python module is unavailable (it is a separate plugin that may be disabled).
    """
    settings = QgsSettings()
    for key in (PYTHON_SETTING_KEY, PYTHON_FALLBACK_KEY):
        value = settings.value(key, "")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def environment_dir() -> Path:
    """The plugin's own venv: in the QGIS profile, outside the plugin folder, so a plugin update keeps it."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "marsice" / "venv"


def setup_command(venv: Path) -> list[str]:
    """The child that makes ``venv``: the platform's base Python running :mod:`marsice_plugin.environment`."""
    return [str(environment.base_python()), "-m", "marsice_plugin.environment", "--json-progress", "--venv", str(venv)]


def set_up_environment(
    venv: Path, on_event: Callable[[dict[str, Any]], None], is_cancelled: Callable[[], bool]
) -> dict[str, Any]:
    """Run the set-up child to the end (its result's outputs), streaming its events; cancel kills it."""
    return child_process.run_json_child(setup_command(venv), on_event, is_cancelled)


def feedback_events(feedback: QgsProcessingFeedback) -> Callable[[dict[str, Any]], None]:
    """The set-up's JSON events into a Processing feedback: the bar, one text per step, and the few log lines.

    The dialog appends every progress text to its log, so a step's text ("downloading the pinned packages (3 of
    about 60: ...)") is shown when the step starts, not once per package.
    """
    shown = {"step": ""}

    def on_event(event: dict[str, Any]) -> None:
        kind, message = event.get("type"), str(event.get("message", ""))
        if kind == "progress":
            feedback.setProgress(float(event.get("percent", 0.0)))
            step = message.split(" (")[0]
            if step != shown["step"]:
                shown["step"] = step
                feedback.setProgressText(f"MarsIce set-up: {message}")
        elif kind == "log":
            (feedback.pushDebugInfo if event.get("level") == "debug" else feedback.pushInfo)(message)
        elif kind == "result" and event.get("summary"):
            feedback.pushInfo(str(event["summary"]))

    return on_event


def configured_python() -> Path | None:
    """The environment named on purpose (setting, variables) or a checkout's ``.venv``; None: the plugin's own.

    A named environment is used or reported as missing (SetupError), never replaced by a new one.
    """
    setting = python_setting()
    try:
        return child_process.find_venv_python(setting)
    except SetupError:
        if setting or any(os.environ.get(k, "").strip() for k in ("MARSICE_PYTHON", "MARSICE_VENV")):
            raise
    return None


def environment_needed() -> bool:
    """Whether the plugin's own environment is still to be made (the desktop then offers to make it)."""
    try:
        return configured_python() is None and not environment.is_ready(environment_dir())
    except SetupError:  # a wrong setting: the tools report it with the fix, a new venv would not help
        return False


def marsice_python(feedback: QgsProcessingFeedback) -> Path:
    """The interpreter to run ``marsice`` with; on first use of a ZIP install, the set-up runs first (minutes).

    Raises SetupError (or CancelledError) with the set-up's own message.
    """
    python = configured_python()
    if python is not None:
        return python
    venv = environment_dir()
    if not environment.is_ready(venv):
        feedback.pushInfo(
            f"First use: MarsIce makes its Python environment in {venv} (about 2 GB from the package index, a few "
            "minutes; later runs start at once). Cancel stops it; the next run resumes."
        )
        set_up_environment(venv, feedback_events(feedback), feedback.isCanceled)
    return environment.venv_python(venv)
