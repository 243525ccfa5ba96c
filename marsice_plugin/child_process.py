"""Run the ``marsice`` CLI in a child process of MarsIce's own Python environment.

Why a child process: QGIS ships its own Python, GDAL, PROJ and numpy, and TensorFlow / rasterio's
wheels ship theirs. Loading both sets in one process crashes or silently mixes library versions, so
the QGIS algorithms never import the heavy core. They start ``python -m marsice_plugin --progress json
...`` with the venv's interpreter and stream its JSON-line events (see :mod:`marsice_plugin.progress`)
back into ``QgsProcessingFeedback``.

This module is pure Python (no ``qgis`` and no Qt import) so it can be tested without QGIS.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import errors
from .errors import CancelledError, MarsIceError, SetupError

#: Folder that contains the ``marsice_plugin`` package: the repository root in a development checkout,
#: or QGIS's plugins folder when the plugin is installed there.
PACKAGE_PARENT = Path(__file__).resolve().parents[1]

#: Variables QGIS (or its launcher) sets for its own bundled libraries. Inherited by the venv's Python
#: they make it import QGIS's site-packages, or make rasterio's GDAL/PROJ read data files of another
#: version (wrong CRS database, missing drivers).
QGIS_ONLY_VARIABLES = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PROJ_LIB",
    "PROJ_DATA",
    "GDAL_DATA",
    "GDAL_DRIVER_PATH",
    "QGIS_PREFIX_PATH",
)

#: How long a child gets to clean up (remove partial outputs) after SIGTERM before it is killed.
TERMINATE_GRACE_S = 10.0

#: How many stderr lines are kept for the error message when a child dies without an error event.
STDERR_TAIL_LINES = 200

_SETUP_HINT = (
    "Run `make setup` in the MarsIce folder, or set the path in "
    "Processing ▸ Options ▸ Providers ▸ MarsIce ▸ Python environment (or the MARSICE_PYTHON "
    "environment variable), or leave both empty to let the plugin make its own environment on first use "
    "(python3 -m marsice_plugin.environment)."
)


def _venv_python(venv: Path) -> Path:
    """The interpreter inside a venv folder."""
    return venv / "Scripts" / "python.exe" if os.name == "nt" else venv / "bin" / "python"


def _python_in(path: Path) -> Path:
    """The interpreter a setting points at: a venv folder means its own python, a file itself."""
    return _venv_python(path) if path.is_dir() else path


def find_venv_python(setting: str | None = None) -> Path:
    """Locate the Python interpreter of MarsIce's environment.

    Order: the explicit ``setting`` (the provider option; a venv folder or a python executable), then
    ``MARSICE_PYTHON`` (an executable or venv folder), then ``MARSICE_VENV`` (a venv folder), then
    ``<repo>/.venv`` next to this package (what ``make setup`` creates). The first one that is given
    wins even if it is wrong, so a typo in a setting is reported instead of silently falling back to
    another environment. The path is not resolved: a venv's ``python`` is a symlink to the system
    interpreter and only keeps its venv when called by the symlink's own path.

    Raises:
        SetupError: the chosen interpreter does not exist or is not executable; the message says how
            to fix it.
    """
    candidates: list[tuple[str, str | None]] = [
        ("the MarsIce provider setting", setting),
        ("MARSICE_PYTHON", os.environ.get("MARSICE_PYTHON")),
        ("MARSICE_VENV", os.environ.get("MARSICE_VENV")),
    ]
    for origin, value in candidates:
        if value and value.strip():
            path = Path(value.strip()).expanduser()
            python = _venv_python(path) if origin == "MARSICE_VENV" else _python_in(path)
            break
    else:
        origin = "the default location"
        python = _venv_python(PACKAGE_PARENT / ".venv")

    if not python.is_file() or not os.access(python, os.X_OK):
        raise SetupError(f"MarsIce's Python environment was not found at {python} (from {origin}). {_SETUP_HINT}")
    return python


def child_env() -> dict[str, str]:
    """The environment for the child: ours minus what QGIS set for its own libraries.

    ``PYTHONUNBUFFERED=1`` makes the child flush every JSON line at once, so progress arrives while
    it happens rather than in one block at exit.
    """
    env = {key: value for key, value in os.environ.items() if key not in QGIS_ONLY_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def error_class(name: object) -> type[MarsIceError]:
    """The MarsIceError subclass the child named, or MarsIceError for anything unknown.

    Looked up in :mod:`marsice_plugin.errors` only, which holds every MarsIce error class (a test walks the
    package to keep it so): a class defined elsewhere would arrive in QGIS as a plain MarsIceError.
    """
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if isinstance(cls, type) and issubclass(cls, MarsIceError):
        return cls
    return MarsIceError


def error_text(exc: MarsIceError) -> str:
    """What QGIS shows for a failed run: the error's class name, then the CLI's own message unchanged.

    ``ProductError: X.LBL does not exist``: the name tells bad input from a missing set-up or a server
    failure at a glance, and is the word to look up in docs/errors.md; the message says what to do.
    """
    return f"{type(exc).__name__}: {exc}"


def _parse_line(line: str) -> dict[str, Any]:
    """One stdout line as an event; stray prose (a library printing) becomes an info log event."""
    text = line.rstrip("\r\n")
    try:
        event = json.loads(text)
    except ValueError:
        event = None
    if isinstance(event, dict) and isinstance(event.get("type"), str):
        return event
    return {"type": "log", "level": "info", "message": text}


def _read_stdout(stream: Any, events: queue.Queue) -> None:
    """Thread body: move stdout lines into the queue, then a ``None`` sentinel at end of file."""
    try:
        for line in stream:
            if line.strip():
                events.put(_parse_line(line))
    finally:
        events.put(None)


def _read_stderr(stream: Any, tail: collections.deque) -> None:
    """Thread body: keep the last lines of stderr (tracebacks) without letting the pipe fill up."""
    for line in stream:
        tail.append(line.rstrip("\r\n"))


def _terminate(proc: subprocess.Popen) -> None:
    """Stop the child and everything it started: SIGTERM to its group, then SIGKILL after grace_s.

    The whole process group is signalled because TensorFlow and multiprocessing start helpers that
    would otherwise keep running (and keep files open) after the child itself exits.
    """
    if proc.poll() is not None:
        return
    grace_s = TERMINATE_GRACE_S  # read at call time so tests can shorten it
    if os.name == "nt":  # no process groups to signal; terminate() is TerminateProcess there
        proc.terminate()
        proc.wait()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # SIGKILL in any case: also sweeps up helpers in the group that outlived the main child
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_marsice(
    args: list[str],
    on_event: Callable[[dict[str, Any]], None],
    is_cancelled: Callable[[], bool],
    python: Path | None = None,
    poll_s: float = 0.1,
) -> dict[str, Any]:
    """Run ``python -m marsice_plugin --progress json *args`` and stream its events.

    Every JSON line the child prints is passed to ``on_event`` in order, in the calling thread (QGIS
    feedback objects belong to the algorithm's thread). ``is_cancelled`` is polled every ``poll_s``
    seconds; on cancel the child's process group gets SIGTERM (the CLI removes its partial outputs),
    then SIGKILL after 10 s.

    The child gets ``PYTHONPATH`` set to the folder holding this package so that it runs exactly the
    same MarsIce code as the plugin that started it, whether or not the venv has MarsIce installed.

    Returns:
        The ``outputs`` dict of the child's ``{"type": "result"}`` event.

    Raises:
        CancelledError: the user cancelled.
        MarsIceError: the child failed; the subclass and message are the ones the child reported in
            its error event, else the last lines of its stderr.
        SetupError: the interpreter is missing or cannot be started.
    """
    if python is None:
        python = find_venv_python()
    command = [str(python), "-m", "marsice_plugin", "--progress", "json", *args]
    return run_json_child(command, on_event, is_cancelled, poll_s)


def run_json_child(
    command: list[str],
    on_event: Callable[[dict[str, Any]], None],
    is_cancelled: Callable[[], bool],
    poll_s: float = 0.1,
) -> dict[str, Any]:
    """Run ``command`` (a Python of MarsIce's, then ``-m`` a module of this package) and stream its JSON events.

    What :func:`run_marsice` does for the CLI, for any module that speaks the same JSON lines: the plugin's
    first-run set-up (:mod:`marsice_plugin.environment`, started with the system Python) uses it too, so it
    cancels, fails and reports exactly as the algorithms do. Returns the ``outputs`` of the result event.
    """
    python = command[0]
    env = child_env()
    env["PYTHONPATH"] = str(PACKAGE_PARENT)
    popen_kwargs: dict[str, Any] = {}
    if os.name == "nt":
        popen_kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        popen_kwargs["start_new_session"] = True
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **popen_kwargs,
        )
    except OSError as exc:
        raise SetupError(f"Could not start MarsIce's Python at {python}: {exc}. {_SETUP_HINT}") from exc

    events: queue.Queue = queue.Queue()
    stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    readers = [
        threading.Thread(target=_read_stdout, args=(proc.stdout, events), daemon=True),
        threading.Thread(target=_read_stderr, args=(proc.stderr, stderr_tail), daemon=True),
    ]
    for reader in readers:
        reader.start()

    result: dict[str, Any] | None = None
    error_event: dict[str, Any] | None = None
    try:
        while True:
            if is_cancelled():
                _terminate(proc)
                raise CancelledError("Cancelled by the user; no output was written.")
            try:
                event = events.get(timeout=poll_s)
            except queue.Empty:
                continue
            if event is None:  # stdout closed: the child is exiting
                break
            if event.get("type") == "result":
                result = event
            elif event.get("type") == "error":
                error_event = event
            on_event(event)
        while proc.poll() is None:  # stdout closed but the child may still be cleaning up
            if is_cancelled():
                _terminate(proc)
                raise CancelledError("Cancelled by the user; no output was written.")
            try:
                proc.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                continue
    finally:
        # Also reached when on_event raised: never leave an orphaned child holding the output open.
        _terminate(proc)
        for reader in readers:
            reader.join(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    if proc.returncode != 0:
        if error_event is not None:
            raise error_class(error_event.get("error"))(str(error_event.get("message", "")))
        tail = "\n".join(list(stderr_tail)[-20:]) or "(nothing on stderr)"
        raise MarsIceError(f"MarsIce stopped with exit code {proc.returncode}:\n{tail}")
    if result is None:
        raise MarsIceError(
            "MarsIce finished without reporting a result; its last messages were:\n"
            + ("\n".join(list(stderr_tail)[-20:]) or "(nothing on stderr)")
        )
    outputs = result.get("outputs", {})
    return dict(outputs) if isinstance(outputs, dict) else {}
