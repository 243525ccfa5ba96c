"""CLI progress: plain lines every few seconds off a terminal, a rich bar on one, JSON lines unchanged.

The clock is a fake one the test moves by hand, so the lines (rate, done/total, time left) are exact.
"""

from __future__ import annotations

import io
import json

from marsice_plugin.progress import Reporter
from marsice_plugin.scan.progress_bar import ProgressBar


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _reporter(mode: str = "text", interval: float = 5.0) -> tuple[Reporter, FakeClock, io.StringIO, io.StringIO]:
    clock, out, err = FakeClock(), io.StringIO(), io.StringIO()
    return Reporter(mode, stdout=out, stderr=err, clock=clock, interval=interval), clock, out, err


def test_off_a_terminal_a_line_every_interval_with_count_rate_and_time_left():
    reporter, clock, out, err = _reporter()
    steps = [(0.0, 0), (2.0, 10), (5.0, 25), (7.0, 35), (10.0, 50), (12.5, 60)]
    for t, done in steps:
        clock.now = 1000.0 + t
        reporter.progress(done, f"chunk {done}/100")
    assert err.getvalue().splitlines() == [
        "[ 25.0%] chunk 25/100 (25/100, 5.00 chunk/s, ETA 0:00:15)",
        "[ 50.0%] chunk 50/100 (50/100, 5.00 chunk/s, ETA 0:00:10)",
    ]
    assert out.getvalue() == ""  # stdout keeps only the result


def test_off_a_terminal_a_short_command_prints_only_its_warnings_and_result():
    reporter, clock, out, err = _reporter()
    reporter.progress(0, "opening")
    clock.now += 1.0
    reporter.log("using 4 threads")
    reporter.log("product is outside the training domain", level="warning")
    reporter.progress(100, "done")
    reporter.result({"OUTPUT": "/x/out.gpkg"}, "1 product scored")
    assert err.getvalue() == "warning: product is outside the training domain\n"
    assert out.getvalue() == "1 product scored\n  OUTPUT: /x/out.gpkg\n"


def test_byte_counts_show_megabytes_per_second_and_a_slow_count_per_minute():
    reporter, clock, _, err = _reporter()
    reporter.progress(0, "fetching A", done=0, total=400e6, unit="B")
    clock.now += 10.0
    reporter.progress(25, "A: 100.0 MB", done=100e6, total=400e6, unit="B")
    slow, clock2, _, err2 = _reporter()
    slow.progress(20, "epoch 1/10")
    clock2.now += 60.0
    slow.progress(30, "epoch 2/10")
    assert err.getvalue() == "[ 25.0%] A: 100.0 MB (100.0 MB/400.0 MB, 10.0 MB/s, ETA 0:00:30)\n"
    assert err2.getvalue() == "[ 30.0%] epoch 2/10 (2/10, 1.00 epoch/min, ETA 0:07:00)\n"


def test_a_new_count_restarts_the_rate_and_a_message_without_one_shows_only_the_time_left():
    reporter, clock, _, err = _reporter(interval=5.0)
    reporter.progress(0, "loading model")
    clock.now += 6.0
    reporter.progress(10, "loading model")
    clock.now += 6.0
    reporter.progress(40, "3/8 products", done=3, total=8, unit="products")
    clock.now += 6.0
    reporter.progress(70, "6/8 products", done=6, total=8, unit="products")
    assert err.getvalue().splitlines() == [
        "[ 10.0%] loading model (ETA 0:00:54)",
        "[ 40.0%] 3/8 products (3/8, ETA 0:00:18)",
        "[ 70.0%] 6/8 products (6/8, 0.50 products/s, ETA 0:00:08)",
    ]


def test_json_lines_for_qgis_are_unchanged_by_counts():
    reporter, clock, out, err = _reporter("json")
    reporter.progress(12.345, "A: 1.0 MB", done=1e6, total=8e6, unit="B")
    clock.now += 60
    reporter.progress(50, "chunk 4/8")
    reporter.log("note")
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"type": "progress", "percent": 12.35, "message": "A: 1.0 MB"},
        {"type": "progress", "percent": 50.0, "message": "chunk 4/8"},
        {"type": "log", "level": "info", "message": "note"},
    ]
    assert err.getvalue() == ""


def test_on_a_terminal_a_rich_bar_with_rate_and_eta_that_logs_print_above_and_close_takes_down():
    clock, out, err = FakeClock(), io.StringIO(), FakeTerminal()
    reporter = Reporter("text", stdout=out, stderr=err, clock=clock)
    reporter.progress(0, "chunk 0/8")
    clock.now += 4.0
    reporter.progress(50, "chunk 4/8")
    reporter.log("flagged chunk 4")
    assert reporter._bar is not None
    reporter._bar.refresh()
    drawn = err.getvalue()
    reporter.result({"OUTPUT": "o.gpkg"}, "done")
    assert reporter._bar is None  # the result is never drawn over
    assert "flagged chunk 4" in drawn and "chunk 4/8" in drawn
    assert "50.0%" in drawn and "1.00 chunk/s" in drawn and "ETA 0:00:04" in drawn
    assert "\x1b[" in drawn  # drawn with terminal control codes, not as plain lines
    assert out.getvalue() == "done\n  OUTPUT: o.gpkg\n"


def test_scan_products_reach_the_plain_lines_with_their_failures():
    reporter, clock, _, err = _reporter(interval=5.0)
    bar = ProgressBar(reporter)
    bar.update(0, 4, "started")
    clock.now += 30.0
    bar.update(1, 4, "ESP_011_0001 committed")
    clock.now += 30.0
    bar.update(2, 4, "ESP_011_0002 failed: truncated JPEG2000")
    bar.close()
    assert err.getvalue().splitlines() == [
        "[ 26.2%] 1/4 products; ESP_011_0001 committed (1/4, 2.00 products/min, ETA 0:01:31)",
        "[ 50.5%] 2/4 products, 1 failed; ESP_011_0002 failed: truncated JPEG2000"
        " (2/4, 2.00 products/min, ETA 0:01:01)",
    ]
