"""``marsice search`` / ``marsice download`` as a user runs them (child processes, 127.0.0.1 only)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marsice_plugin", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, **env},
    )  # fmt: skip


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_lists_the_commands():
    proc = run("--help")
    for command in ("detect", "search", "download", "tile", "terrain", "train", "evaluate", "scan", "sites", "export"):
        assert f"    {command}" in proc.stdout, command
    assert "planned" not in proc.stdout


def test_auto_falls_back_to_the_bundled_catalogue_when_ode_is_unreachable(tmp_path):
    out = tmp_path / "fp.gpkg"
    proc = run(
        "--progress", "json", "search", "--lat", "-60", "-40", "--ls", "340", "20", "--mars-year", "30", "-o", str(out),
        MARSICE_ODE_URL=f"http://127.0.0.1:{closed_port()}/live2/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert any(e["type"] == "log" and e["level"] == "warning" and "bundled offline catalogue" in e["message"]
               for e in events)  # fmt: skip
    result = next(e for e in events if e["type"] == "result")["outputs"]
    assert result["source"] == "bundled" and result["OUTPUT"] == str(out)
    with sqlite3.connect(out) as db:
        rows = db.execute("SELECT mars_year, ls, centre_lat FROM footprints").fetchall()
    assert len(rows) == result["products"] > 0
    assert all(y == 30 and (ls >= 340 or ls <= 20) and -60 <= lat <= -40 for y, ls, lat in rows)


def test_errors_say_what_to_do():
    proc = run("search", "--lat", "-40", "-60", "--source", "bundled")
    assert proc.returncode == 2 and "MIN MAX" in proc.stderr
    proc = run("search", "--lat", "-60", "-40", "--source", "ode", "--timeout", "2",
               "--ode-url", f"http://127.0.0.1:{closed_port()}/live2/")  # fmt: skip
    assert proc.returncode == 5 and "--source bundled" in proc.stderr
    proc = run("search", "--lat", "-60", "-40", "--product", "DTM", "--source", "bundled")
    assert proc.returncode == 2 and "no DTMs" in proc.stderr
    proc = run("download", "--to", "/tmp/never")
    assert proc.returncode == 5 and "give product ids or --from" in proc.stderr


def test_the_table_shows_the_sun_azimuth_of_the_papers_band():
    """The paper's criterion needs the sun's direction; in its band the bundled catalogue gives 290-303° for most."""
    proc = run("search", "--lat", "-60", "-40", "--ls", "140", "200", "--source", "bundled", "--table", "12")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("product_id"))
    assert lines[header].split() == ["product_id", "MY", "Ls", "lat", "lon", "inc", "sun", "scale", "MB"]
    suns = [float(line.split()[6]) for line in lines[header + 1 : header + 13]]
    assert len(suns) == 12 and all(0 <= s < 360 for s in suns)
    assert sum(280 <= s <= 310 for s in suns) >= 8
