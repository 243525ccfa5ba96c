"""The child-process runner the QGIS algorithms use, tested against real (fake) child processes.

No QGIS here: ``run_marsice`` is pointed at a small executable script that stands in for the venv's
Python. It receives exactly the argv the real one would (``-m marsice_plugin --progress json ...``)
and plays a scenario chosen by the sub-command name: print JSON lines, fail, crash, or sleep.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from marsice_plugin import child_process
from marsice_plugin.child_process import child_env, find_venv_python, run_marsice
from marsice_plugin.errors import CancelledError, LabelError, MarsIceError, ProductError, SetupError

FAKE_CHILD = r"""#!{python}
import json, os, signal, subprocess, sys, time

def emit(**event):
    print(json.dumps(event), flush=True)

argv = sys.argv[1:]
scenario = argv[4]
if scenario == "ok":
    emit(type="progress", percent=0.0, message="reading label")
    emit(type="log", level="info", message="product ESP_000001_0000_RED")
    print("a library printed this", flush=True)
    emit(type="progress", percent=50.0, message="chunk 1/2")
    emit(type="log", level="warning", message="chunk 2 is mostly no-data")
    emit(type="progress", percent=100.0, message="done")
    emit(type="result", outputs={{
        "OUTPUT": "/tmp/out.gpkg",
        "argv": argv,
        "env": {{k: os.environ.get(k) for k in ("PYTHONPATH", "PROJ_LIB", "PYTHONUNBUFFERED")}},
    }}, summary="2 chunks")
elif scenario == "fail":
    emit(type="progress", percent=10.0, message="reading label")
    emit(type="error", error="LabelError", message="MAP_PROJECTION_TYPE is missing", exit_code=2)
    sys.stderr.write("marsice: error: MAP_PROJECTION_TYPE is missing\n")
    sys.exit(2)
elif scenario == "unknown-error":
    emit(type="error", error="os", message="not a MarsIce error class", exit_code=1)
    sys.exit(1)
elif scenario == "crash":
    for i in range(300):
        sys.stderr.write(f"noise {{i}}\n")
    sys.stderr.write("Traceback (most recent call last):\nZeroDivisionError: division by zero\n")
    sys.exit(1)
elif scenario == "no-result":
    emit(type="progress", percent=100.0, message="done")
elif scenario == "sleep":
    if "--ignore-term" in argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    helper = subprocess.Popen(["sleep", "60"])
    emit(type="log", level="info", message="started", pid=os.getpid(), helper_pid=helper.pid)
    time.sleep(60)
    emit(type="result", outputs={{}})
"""


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    """An executable that stands in for the venv's python and plays the scenario named by argv."""
    path = tmp_path / "venv" / "bin" / "python"
    path.parent.mkdir(parents=True)
    path.write_text(FAKE_CHILD.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _alive(pid: int) -> bool:
    """True while pid is a running (not zombie) process; zombies count as gone since they hold nothing."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _never() -> bool:
    return False


def test_events_arrive_in_order_and_result_outputs_are_returned(
    fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROJ_LIB", "/usr/share/qgis-proj")
    monkeypatch.setenv("PYTHONPATH", "/usr/share/qgis/python")
    events: list[dict] = []

    outputs = run_marsice(["ok", "P.LBL", "-o", "out.gpkg"], events.append, _never, python=fake_python)

    assert [(e["type"], e.get("percent"), e.get("message")) for e in events] == [
        ("progress", 0.0, "reading label"),
        ("log", None, "product ESP_000001_0000_RED"),
        ("log", None, "a library printed this"),
        ("progress", 50.0, "chunk 1/2"),
        ("log", None, "chunk 2 is mostly no-data"),
        ("progress", 100.0, "done"),
        ("result", None, None),
    ]
    assert events[2]["level"] == "info"  # non-JSON stdout is wrapped as an info log line
    assert events[4]["level"] == "warning"
    assert events[-1]["summary"] == "2 chunks"
    assert outputs["OUTPUT"] == "/tmp/out.gpkg"
    # the global option goes before the sub-command, and the child runs as a module
    assert outputs["argv"] == ["-m", "marsice_plugin", "--progress", "json", "ok", "P.LBL", "-o", "out.gpkg"]
    # QGIS's variables do not leak; the child imports the same marsice_plugin as the parent
    assert outputs["env"] == {
        "PYTHONPATH": str(child_process.PACKAGE_PARENT),
        "PROJ_LIB": None,
        "PYTHONUNBUFFERED": "1",
    }


def test_error_event_becomes_the_named_marsice_error(fake_python: Path) -> None:
    events: list[dict] = []
    with pytest.raises(LabelError) as info:
        run_marsice(["fail"], events.append, _never, python=fake_python)
    assert str(info.value) == "MAP_PROJECTION_TYPE is missing"
    assert isinstance(info.value, ProductError)
    assert [e["type"] for e in events] == ["progress", "error"]


def test_unknown_error_name_falls_back_to_marsice_error(fake_python: Path) -> None:
    with pytest.raises(MarsIceError) as info:
        run_marsice(["unknown-error"], lambda e: None, _never, python=fake_python)
    assert type(info.value) is MarsIceError
    assert str(info.value) == "not a MarsIce error class"


def test_crash_without_error_event_reports_the_end_of_stderr(fake_python: Path) -> None:
    with pytest.raises(MarsIceError) as info:
        run_marsice(["crash"], lambda e: None, _never, python=fake_python)
    message = str(info.value)
    assert type(info.value) is MarsIceError
    assert "exit code 1" in message
    assert "ZeroDivisionError: division by zero" in message
    assert "noise 0\n" not in message  # bounded: only the tail of a long stderr


def test_exit_zero_without_result_is_an_error(fake_python: Path) -> None:
    with pytest.raises(MarsIceError, match="without reporting a result"):
        run_marsice(["no-result"], lambda e: None, _never, python=fake_python)


@pytest.mark.parametrize("ignore_term", [False, True], ids=["sigterm", "sigkill-after-grace"])
def test_cancel_kills_the_child_and_its_helpers(
    fake_python: Path, monkeypatch: pytest.MonkeyPatch, ignore_term: bool
) -> None:
    monkeypatch.setattr(child_process, "TERMINATE_GRACE_S", 1.0)
    pids: dict[str, int] = {}

    def on_event(event: dict) -> None:
        if "pid" in event:
            pids.update(child=event["pid"], helper=event["helper_pid"])

    args = ["sleep", "--ignore-term"] if ignore_term else ["sleep"]
    start = time.monotonic()
    with pytest.raises(CancelledError, match="Cancelled by the user; no output was written"):
        run_marsice(args, on_event, lambda: bool(pids), python=fake_python, poll_s=0.05)
    elapsed = time.monotonic() - start

    assert pids, "the child never reported its pid"
    assert elapsed < 5.0
    assert not _alive(pids["child"])
    deadline = time.monotonic() + 2.0  # the orphaned helper is reaped by init, maybe not instantly
    while _alive(pids["helper"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pids["helper"])


def test_exception_in_on_event_does_not_orphan_the_child(fake_python: Path) -> None:
    pids: list[int] = []

    def on_event(event: dict) -> None:
        pids.append(event["pid"])
        raise RuntimeError("feedback broke")

    with pytest.raises(RuntimeError, match="feedback broke"):
        run_marsice(["sleep"], on_event, _never, python=fake_python)
    assert pids and not _alive(pids[0])


def _clear_python_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARSICE_PYTHON", raising=False)
    monkeypatch.delenv("MARSICE_VENV", raising=False)


def test_find_venv_python_order(fake_python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_python_env(monkeypatch)
    venv = fake_python.parent.parent
    other = tmp_path / "other" / "bin" / "python"
    other.parent.mkdir(parents=True)
    other.write_text("")
    other.chmod(0o755)

    # default: <folder holding the package>/.venv
    monkeypatch.setattr(child_process, "PACKAGE_PARENT", tmp_path)
    (tmp_path / ".venv").symlink_to(venv)
    assert find_venv_python() == tmp_path / ".venv" / "bin" / "python"
    monkeypatch.setenv("MARSICE_VENV", str(other.parent.parent))
    assert find_venv_python() == other
    monkeypatch.setenv("MARSICE_PYTHON", str(fake_python))
    assert find_venv_python() == fake_python
    # an explicit setting (venv folder or executable) wins over the environment
    assert find_venv_python(str(other.parent.parent)) == other
    assert find_venv_python(str(other)) == other
    # an empty setting means "not set"
    assert find_venv_python("  ") == fake_python


def test_missing_venv_raises_setup_error_saying_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_python_env(monkeypatch)
    monkeypatch.setattr(child_process, "PACKAGE_PARENT", tmp_path)
    with pytest.raises(SetupError) as info:
        find_venv_python()
    assert "make setup" in str(info.value)
    assert str(tmp_path / ".venv" / "bin" / "python") in str(info.value)

    monkeypatch.setenv("MARSICE_PYTHON", "/nonexistent/python")
    with pytest.raises(SetupError, match="make setup") as info:
        find_venv_python()
    assert "/nonexistent/python" in str(info.value)
    assert "MARSICE_PYTHON" in str(info.value)


def test_missing_python_in_run_marsice_is_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="make setup"):
        run_marsice(["ok"], lambda e: None, _never, python=tmp_path / "nope" / "python")


def test_child_env_drops_qgis_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in child_process.QGIS_ONLY_VARIABLES:
        monkeypatch.setenv(name, "/from/qgis")
    monkeypatch.setenv("MARSICE_KEEP_ME", "yes")
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)

    env = child_env()

    for name in ("PYTHONPATH", "PYTHONHOME", "PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "GDAL_DRIVER_PATH"):
        assert name not in env
    assert "QGIS_PREFIX_PATH" not in env
    assert env["MARSICE_KEEP_ME"] == "yes"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert os.environ["PYTHONPATH"] == "/from/qgis"  # the parent's own environment is untouched
