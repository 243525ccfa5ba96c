"""MarsIce's own Python environment, made on first use when the plugin was installed from its ZIP.

Why: QGIS's Python must never load TensorFlow and rasterio's own GDAL (:mod:`marsice_plugin.child_process`), so
the heavy work runs in a venv of its own. A developer gets one from ``make setup``; a geologist who installs the
plugin ZIP has no checkout and no ``make``, so the plugin makes it the first time a tool runs: a venv of the
system Python (``--system-site-packages``), the pinned packages of ``pyproject.toml`` (the one list ``make setup``
installs too; ``make zip`` ships a copy in the plugin), and the ``marsice`` package built from the plugin folder
itself, models included. It ends with a self-check that scores one generated chunk with the default model
(:mod:`marsice_plugin.environment_check`), so a broken install fails here and not in the middle of a detection.

Where: a folder the plugin owns outside the plugin directory (QGIS: ``<profile>/marsice/venv``; from a shell:
``$XDG_DATA_HOME/marsice/venv``), because updating the plugin replaces its folder and must not cost the 1.9 GB
environment. A stamp in the venv records the plugin version and a hash of the pins: an update whose pins are
unchanged reinstalls only the small ``marsice`` package, not TensorFlow.

Which Python makes the venv: the one that runs this module. The QGIS side starts it with :func:`base_python`:
``/usr/bin/python3`` on Linux (QGIS's Python there is the system's), QGIS's own ``python.exe`` / ``python3`` on
Windows and macOS, where QGIS ships its Python (the README says what is tested). Pure standard library, no qgis
import: ``python3 -m marsice_plugin.environment --json-progress`` prints the JSON lines of
:mod:`marsice_plugin.progress`, which the plugin streams into its progress bar.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .child_process import PACKAGE_PARENT, QGIS_ONLY_VARIABLES, _venv_python, child_env
from .errors import CancelledError, MarsIceError, SetupError
from .progress import Reporter

PACKAGE_DIR = Path(__file__).resolve().parent
#: The optional-dependency sets of pyproject.toml installed beside the core ones (GPU machines: ``--extras gpu``).
DEFAULT_EXTRAS = ("cpu",)
#: The stamp inside the venv: plugin version, pins hash, extras, self-check result.
STAMP_NAME = "marsice-environment.json"
#: Free space asked for before a new venv is made. Measured: the venv with the cpu pins takes 1.9 GB, and pip
#: unpacks the TensorFlow wheel (about 250 MB) beside it.
MIN_FREE_BYTES = 3 * 1024**3
#: Distributions pip installs for the pins (measured: 60 new ones for the cpu set on Debian 12), to turn its log
#: into a percentage.
EXPECTED_DISTRIBUTIONS = 60
#: As ``make setup``: Debian 12's pip 23 is older than the wheels' metadata some pins need.
PIP_REQUIREMENT = "pip>=24"

#: What pip or venv print, and what the user should do about it (first match wins).
_NO_SPACE = ("No space left on device", "[Errno 28]")
_NO_NETWORK = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "Max retries exceeded",
    "Read timed out",
    "Could not fetch URL",
    "(from versions: none)",  # what pip says when every index failed to answer, with retries off or exhausted
)
_NO_PIP = ("ensurepip is not", "No module named pip", "No module named venv", "No module named ensurepip")


def pyproject_path() -> Path:
    """The pins' one source: the checkout's ``pyproject.toml``, else the copy ``make zip`` puts in the plugin."""
    for path in (PACKAGE_DIR.parent / "pyproject.toml", PACKAGE_DIR / "pyproject.toml"):
        if path.is_file() and _project(path).get("name") == "marsice":
            return path
    raise SetupError(
        f"{PACKAGE_DIR} has no pyproject.toml with MarsIce's pinned packages; reinstall the plugin from a ZIP made "
        "by `make zip`, or run `make setup` in a MarsIce checkout"
    )


def _project(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError as exc:  # Python < 3.11, which MarsIce does not run on anyway
        raise SetupError(f"MarsIce needs Python 3.11 or newer to set up its environment, not {sys.version}") from exc
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
    except (OSError, ValueError) as exc:
        raise SetupError(f"{path}: unreadable ({exc}); reinstall the plugin") from exc


def pinned_requirements(extras: Sequence[str] = DEFAULT_EXTRAS, pyproject: Path | None = None) -> list[str]:
    """The exact pins pip installs: the project's dependencies, then those of each extra, in file order."""
    project = _project(pyproject or pyproject_path())
    requirements = [str(r) for r in project.get("dependencies", [])]
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SetupError(f"unknown package set {extra!r}; choose from {', '.join(sorted(optional))}")
        requirements += [str(r) for r in optional[extra]]
    return requirements


def pins_hash(requirements: Sequence[str]) -> str:
    """What the stamp compares: the pins and the interpreter's minor version (a new Python needs new wheels)."""
    text = json.dumps({"pins": sorted(requirements), "python": list(sys.version_info[:2])})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_venv_dir() -> Path:
    """Where a shell user's environment goes: ``$MARSICE_VENV``, else the platform's per-user data folder."""
    env = os.environ.get("MARSICE_VENV", "").strip()
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Application Support"
    else:
        root = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return root / "marsice" / "venv"


def venv_python(venv: Path) -> Path:
    """The interpreter inside a venv folder (``Scripts\\python.exe`` on Windows, ``bin/python`` elsewhere)."""
    return _venv_python(venv)


def base_python() -> Path:
    """The Python to make the venv with, chosen by platform (``$MARSICE_BASE_PYTHON`` first).

    Linux: ``/usr/bin/python3``, the interpreter QGIS's Python bindings belong to (inside QGIS
    ``sys.executable`` is the QGIS program). Windows and macOS: the Python QGIS ships, found from
    ``sys.exec_prefix`` of the QGIS process (``apps\\Python3x\\python.exe``; ``Contents/.../bin/python3``).
    """
    env = os.environ.get("MARSICE_BASE_PYTHON", "").strip()
    prefixes = (Path(sys.exec_prefix), Path(sys.base_exec_prefix), Path(sys.executable).parent)
    if env:
        candidates = [Path(env)]
    elif sys.platform == "win32":
        candidates = [p / "python.exe" for p in prefixes] + [p / "python3.exe" for p in prefixes]
    elif sys.platform == "darwin":
        candidates = [p / "bin" / "python3" for p in prefixes]
    else:
        candidates = [Path("/usr/bin/python3")]
    if Path(sys.executable).name.lower().startswith("python"):
        candidates.append(Path(sys.executable))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(
        f"no Python found to make MarsIce's environment with (looked at {', '.join(map(str, candidates))}); "
        "set MARSICE_BASE_PYTHON to a Python 3.11+ executable, or see the README's 'Install from ZIP' section"
    )


def read_stamp(venv: Path) -> dict[str, Any] | None:
    """The venv's stamp, or None when there is none or it is unreadable (then the set-up runs again)."""
    try:
        stamp = json.loads((venv / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_ready(venv: Path, extras: Sequence[str] = DEFAULT_EXTRAS) -> bool:
    """Whether ``venv`` is set up for this plugin version and these pins (cheap: one small file is read)."""
    stamp = read_stamp(venv)
    return (
        stamp is not None
        and venv_python(venv).is_file()
        and stamp.get("version") == __version__
        and stamp.get("pins") == pins_hash(pinned_requirements(extras))
    )


def check_free_space(folder: Path, need: int = MIN_FREE_BYTES) -> None:
    """Refuse early, with the figures, rather than fail half-way through unpacking TensorFlow."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < need:
        raise SetupError(
            f"not enough free disk space for MarsIce's environment in {folder}: {free / 1e9:.1f} GB free, about "
            f"{need / 1e9:.1f} GB needed; free some space there (or point MARSICE_VENV at another disk) and retry"
        )


def failure(lines: Sequence[str], what: str, venv: Path) -> SetupError:
    """The SetupError for a failed pip or venv run, from its last lines: disk full, no network, no pip, or other."""
    text = "\n".join(lines)
    tail = "\n".join(list(lines)[-12:])
    if any(marker in text for marker in _NO_SPACE):
        return SetupError(
            f"{what} failed: the disk holding {venv} is full (about {MIN_FREE_BYTES / 1e9:.0f} GB are needed); "
            "free some space and retry"
        )
    if any(marker in text for marker in _NO_NETWORK):
        return SetupError(
            f"{what} failed: pip could not reach the package index, or found nothing there (no network, or a proxy "
            "in the way). Connect and retry, or point pip at a mirror or a folder of wheels (PIP_INDEX_URL / "
            f"PIP_FIND_LINKS). pip said:\n{tail}"
        )
    if any(marker in text for marker in _NO_PIP):
        return SetupError(
            f"{what} failed: this Python cannot make a venv with pip. On Debian/Ubuntu install python3-venv "
            f"(sudo apt install python3-venv), then retry. It said:\n{tail}"
        )
    return SetupError(f"{what} failed; its last lines were:\n{tail}")


class _TextReporter:
    """Plain lines on stderr for a person at a shell (the JSON Reporter is for the plugin)."""

    def progress(self, percent: float, message: str = "") -> None:
        print(f"[{percent:5.1f}%] {message}", file=sys.stderr, flush=True)

    def log(self, message: str, level: str = "info") -> None:
        if level != "debug":
            print(("warning: " if level == "warning" else "") + message, file=sys.stderr, flush=True)

    def result(self, outputs: dict[str, Any], summary: str = "") -> None:
        print(summary, *(f"  {k}: {v}" for k, v in outputs.items()), sep="\n", flush=True)

    def error(self, exc: BaseException, exit_code: int) -> None:
        print(f"marsice: error: {exc}", file=sys.stderr, flush=True)


def _run(command: list[str], what: str, venv: Path, on_line: Callable[[str], None] = lambda line: None) -> None:
    """Run a set-up step, stream its output lines to ``on_line``, and turn a failure into a SetupError.

    The step stays in this process's group, so the plugin's cancel (SIGTERM, then SIGKILL, to the group) stops
    pip with it. Without QGIS's library variables, as every MarsIce child runs.
    """
    env = {k: v for k, v in os.environ.items() if k not in QGIS_ONLY_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    tail: collections.deque[str] = collections.deque(maxlen=200)
    try:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env
        )
    except OSError as exc:
        raise SetupError(f"{what} failed: could not start {command[0]} ({exc})") from exc
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            on_line(tail[-1])
        code = proc.wait()
    except KeyboardInterrupt as exc:
        proc.kill()
        proc.wait()
        raise CancelledError("the environment set-up was cancelled; it resumes where it stopped next time") from exc
    if code != 0:
        raise failure(tail, what, venv)


class _PipProgress:
    """Turns pip's "Collecting X" lines into a percentage between ``low`` and ``high``."""

    def __init__(self, report: Any, low: float, high: float):
        self.report, self.low, self.high, self.seen = report, low, high, 0

    def __call__(self, line: str) -> None:
        if line.startswith("Collecting "):
            self.seen += 1
            name = line.split()[1]
            share = min(self.seen / EXPECTED_DISTRIBUTIONS, 1.0)
            message = f"downloading the pinned packages ({self.seen} of about {EXPECTED_DISTRIBUTIONS}: {name})"
            self.report.progress(self.low + (self.high - self.low) * share, message)
        elif line.startswith("Installing collected packages"):
            self.report.progress(self.high, "installing the packages (TensorFlow takes a minute or two)")
        elif line.startswith(("ERROR", "WARNING")):  # an ERROR also ends in the SetupError; warnings are noise
            self.report.log(line, "debug")


def _package_source(build: Path) -> Path:
    """A project folder to build the ``marsice`` package from: the plugin folder (models included) + pyproject."""
    source = build / "source"
    shutil.copytree(PACKAGE_DIR, source / "marsice_plugin", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (source / "marsice_plugin" / "pyproject.toml").unlink(missing_ok=True)
    shutil.copy(pyproject_path(), source / "pyproject.toml")
    (source / "README.md").write_text("MarsIce, installed from its QGIS plugin folder.\n")
    # the models are not package data in a checkout (they live in models/ there); in the plugin they are
    (source / "MANIFEST.in").write_text("recursive-include marsice_plugin/models *\n")
    return source


@contextlib.contextmanager
def _lock(venv: Path, report: Any) -> Iterator[None]:
    """One set-up at a time per venv (two tools started at once): an advisory lock beside the venv (POSIX)."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no fcntl; two set-ups at once there are left to pip
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report.log("another MarsIce set-up is running for this environment; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def self_check(python: Path, venv: Path) -> dict[str, Any]:
    """Score one generated chunk with the default model in the new environment, as the plugin will run it."""
    env = child_env()
    env["PYTHONPATH"] = str(PACKAGE_PARENT)
    what = "the self-check (scoring one generated chunk)"
    command = [str(python), "-m", "marsice_plugin.environment_check"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=1800)
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"{what} did not finish in 30 minutes; rerun the set-up with --check") from exc
    lines = (proc.stdout + proc.stderr).splitlines()
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (IndexError, ValueError):
        result = None
    if not isinstance(result, dict):
        raise failure(lines, what, venv)
    if result.get("installed_version") != __version__:
        raise SetupError(
            f"the self-check found marsice {result.get('installed_version')} installed in {venv}, not the plugin's "
            f"{__version__}; rerun the set-up with --force"
        )
    return result


def ensure(
    venv: Path, report: Any, extras: Sequence[str] = DEFAULT_EXTRAS, force: bool = False, check: bool = False
) -> dict[str, Any]:
    """Make ``venv`` ready (only the steps it lacks), self-check it, stamp it; returns what the stamp records."""
    requirements = pinned_requirements(extras)
    digest = pins_hash(requirements)
    python = venv_python(venv)
    with _lock(venv, report):
        stamp = read_stamp(venv) if python.is_file() else None
        need_pins = force or stamp is None or stamp.get("pins") != digest
        need_package = need_pins or stamp.get("version") != __version__
        if not (need_pins or need_package or check):
            report.progress(100.0, "MarsIce's environment is ready")
            return stamp or {}
        started = time.monotonic()
        if need_pins:
            if not python.is_file():
                check_free_space(venv)
                report.progress(1.0, f"making a venv of {sys.executable} in {venv}")
                _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], "making the venv", venv)
            report.progress(5.0, "updating pip")
            _run([str(python), "-m", "pip", "install", "--progress-bar", "off", PIP_REQUIREMENT], "pip", venv)
            report.log(f"installing {len(requirements)} pinned packages (about 2 GB) from the package index")
            pins = [str(python), "-m", "pip", "install", "--progress-bar", "off", *requirements]
            _run(pins, "installing the pinned packages", venv, _PipProgress(report, 8.0, 80.0))
        report.progress(82.0, "installing marsice from the plugin folder")
        with tempfile.TemporaryDirectory(prefix="marsice-package-") as build:
            package = [str(python), "-m", "pip", "install", "--progress-bar", "off", "--no-deps", "--force-reinstall"]
            _run([*package, str(_package_source(Path(build)))], "installing marsice", venv)
        report.progress(90.0, "self-check: scoring one generated chunk with the default model")
        result = self_check(python, venv)
        stamp = {
            "version": __version__,
            "pins": digest,
            "extras": list(extras),
            "base_python": sys.executable,
            "seconds": round(time.monotonic() - started, 1),
            "self_check": result,
        }
        (venv / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n")
        report.progress(100.0, "MarsIce's environment is ready")
        return stamp


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 -m marsice_plugin.environment``: make (or check) MarsIce's environment; exit 0 when ready."""
    parser = argparse.ArgumentParser(prog="python3 -m marsice_plugin.environment", description=__doc__.split("\n")[0])
    parser.add_argument("--venv", type=Path, default=None, help=f"venv folder (default: {default_venv_dir()})")
    parser.add_argument("--extras", default=",".join(DEFAULT_EXTRAS), help="pyproject extras to install (cpu, gpu)")
    parser.add_argument("--force", action="store_true", help="reinstall the pinned packages even if the stamp matches")
    parser.add_argument("--check", action="store_true", help="run the self-check even if the stamp matches")
    parser.add_argument("--json-progress", action="store_true", help="JSON lines on stdout, as the plugin reads")
    args = parser.parse_args(argv)
    report: Any = Reporter("json") if args.json_progress else _TextReporter()
    venv = (args.venv or default_venv_dir()).expanduser().absolute()
    try:
        stamp = ensure(venv, report, tuple(filter(None, args.extras.split(","))), args.force, args.check)
    except MarsIceError as exc:
        report.error(exc, exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        report.error(CancelledError("cancelled"), CancelledError.exit_code)
        return CancelledError.exit_code
    check = stamp.get("self_check", {})
    summary = f"MarsIce's environment is ready: {venv_python(venv)}"
    if "probability" in check:
        summary += f" (self-check: one generated chunk scored {check['probability']:.3f})"
    report.result({"PYTHON": str(venv_python(venv)), "VENV": str(venv), "SELF_CHECK": check}, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
