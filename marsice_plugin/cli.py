"""The ``marsice`` command line: a thin layer over the library (like rasterio's ``rio``).

Every sub-command maps its options to one library call. Errors derived from
:class:`~marsice_plugin.errors.MarsIceError` end the command with one clear line on stderr and a
non-zero exit code (``--debug`` shows the traceback); with ``--progress json`` progress, logs,
results and errors are JSON lines on stdout (see :mod:`marsice_plugin.progress`), which is how the
QGIS algorithms drive this CLI in a child process. SIGTERM cancels cleanly: outputs are written
atomically, so a cancelled command leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from typing import Any

from . import __version__
from .commands import (
    demo,
    detect,
    download,
    ensemble,
    evaluate,
    export,
    sample,
    scan,
    search,
    sites,
    terrain,
    tile,
    train,
)
from .errors import CancelledError, MarsIceError
from .progress import Reporter, quiet_swallowed_cancel, request_cancel

#: Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES = {
    "demo": demo,
    "detect": detect,
    "sample": sample,
    "train": train,
    "ensemble": ensemble,
    "search": search,
    "download": download,
    "tile": tile,
    "terrain": terrain,
    "evaluate": evaluate,
    "scan": scan,
    "sites": sites,
    "export": export,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marsice",
        description="Find remnant seasonal water-ice patches in HiRISE images of Mars.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"marsice {__version__}")
    parser.add_argument(
        "--progress",
        choices=("text", "json", "quiet"),
        default="text",
        help="progress on stderr (text), as JSON lines on stdout (json, used by QGIS), or none",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES.values():
        module.add_parser(sub)
    return parser


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (QGIS's cancel, a cluster's pre-emption): stop now, write nothing.

    KeyboardInterrupt rather than CancelledError: it derives from BaseException, so no library code's
    ``except Exception`` can swallow the cancel or turn it into another error (measured: Python's
    ``inspect`` and the label reader did). ``main`` reports it as CancelledError (exit 130).
    """
    request_cancel()
    raise KeyboardInterrupt("SIGTERM")


def _unraisable(report: Any) -> None:
    """Keep stderr to one line when a cancel's interrupt is swallowed; report anything else as usual."""
    if not quiet_swallowed_cancel(report):
        sys.__unraisablehook__(report)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    reporter = Reporter(args.progress)
    signal.signal(signal.SIGTERM, _terminate)
    sys.unraisablehook = _unraisable
    try:
        COMMAND_MODULES[args.command].run(args, reporter)
    except MarsIceError as exc:
        if args.debug:
            traceback.print_exc()
        reporter.error(exc, exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        # A command whose work outlives a cancel (scan keeps every committed product) says so itself.
        message = getattr(COMMAND_MODULES[args.command], "CANCEL_MESSAGE", "no output was written")
        exc = CancelledError(f"cancelled by the user; {message}")
        reporter.error(exc, exc.exit_code)
        return exc.exit_code
    except ValueError as exc:
        if args.debug:
            traceback.print_exc()
        reporter.error(exc, 2)
        return 2
    except Exception as exc:  # noqa: BLE001 - last resort: one clear line instead of a traceback
        if args.debug:
            traceback.print_exc()
        wrapped = MarsIceError(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)")
        reporter.error(wrapped, 1)
        return 1
    finally:
        reporter.close()  # a terminal's progress bar never outlives the command
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
