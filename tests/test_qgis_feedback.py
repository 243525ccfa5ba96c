"""QGIS feedback throttling: a few progress texts and log lines per stage, held-back lines counted.

The rules live in plain Python (``qgisplugin/feedback.py``, no ``qgis`` import), so they are tested here
without QGIS; ``algorithms/base.py`` pushes exactly the lines the throttle returns.
"""

from __future__ import annotations

from marsice_plugin.qgisplugin.feedback import FeedbackThrottle, stage_of


def _site_history_events(sites: int) -> list[tuple[str, str, str]]:
    """The events ``marsice sites`` reports (sites/build.py), in order, for ``sites`` sites."""
    events = [("progress", "", "reading results"), ("log", "info", "412 candidates in 37 processed products")]
    events.append(("progress", "", f"{sites} sites; searching the catalogue"))
    events += [("progress", "", f"site {k}/{sites}") for k in range(1, sites + 1)]
    events += [("progress", "", f"plot {k}/{sites}") for k in range(1, sites + 1)]
    events += [("progress", "", "writing GeoPackage"), ("progress", "", "done")]
    return events


def _replay(throttle: FeedbackThrottle, events: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    shown = []
    for kind, level, message in events:
        shown += throttle.progress(message) if kind == "progress" else throttle.log(level, message)
    return shown + throttle.finish()


def test_site_history_of_80_sites_logs_a_few_lines_per_stage_not_one_per_site():
    events = _site_history_events(80)
    assert len(events) == 165  # what QGIS's log showed before: one line per event
    shown = _replay(FeedbackThrottle(lines_per_stage=4), events)
    assert shown == [
        ("progress", "reading results"),
        ("info", "412 candidates in 37 processed products"),
        ("progress", "80 sites; searching the catalogue"),
        ("progress", "site 1/80"),
        ("progress", "site 27/80"),
        ("progress", "site 54/80"),
        ("progress", "site 80/80"),
        ("progress", "plot 1/80"),
        ("progress", "plot 27/80"),
        ("progress", "plot 54/80"),
        ("progress", "plot 80/80"),
        ("progress", "writing GeoPackage"),
        ("progress", "done"),
    ]


def test_a_counted_stage_starting_at_zero_shows_first_and_last_and_a_stage_of_two_shows_both():
    throttle = FeedbackThrottle(lines_per_stage=3)
    shown = [t for k in range(0, 11) for _, t in throttle.progress(f"chunk {k}/10")]
    assert shown == ["chunk 0/10", "chunk 5/10", "chunk 10/10"]
    short = [t for k in (1, 2) for _, t in throttle.progress(f"epoch {k}/2")]
    assert short == ["epoch 1/2", "epoch 2/2"]


def test_scan_lines_are_one_stage_whatever_their_product_says():
    throttle = FeedbackThrottle(lines_per_stage=4)
    messages = [f"{k}/30 products; ESP_0{k:05d}_1300_RED {'failed' if k % 7 == 0 else 'committed'}" for k in range(31)]
    shown = [t for m in messages for _, t in throttle.progress(m)]
    assert [s.split(";")[0] for s in shown] == ["0/30 products", "10/30 products", "20/30 products", "30/30 products"]


def test_repeated_log_lines_are_capped_per_kind_and_counted_at_the_end():
    throttle = FeedbackThrottle(lines_per_stage=2)
    shown = []
    for k in range(5):
        shown += throttle.log("warning", f"ESP_0{k}0000_1300_RED has no size in the listing")
        shown += throttle.log("info", f"ESP_0{k}0000_1300_RED: 12.{k} MB  https://example/{k}")
    shown += throttle.log("warning", "the catalogue is 40 days old")
    shown += throttle.finish()
    assert shown == [
        ("warning", "ESP_000000_1300_RED has no size in the listing"),
        ("info", "ESP_000000_1300_RED: 12.0 MB  https://example/0"),
        ("warning", "ESP_010000_1300_RED has no size in the listing"),
        ("info", "ESP_010000_1300_RED: 12.1 MB  https://example/1"),
        ("warning", "the catalogue is 40 days old"),  # another kind of warning: shown
        ("warning", "(3 more warning lines like 'ESP_#_#_RED has no size in the listing' not shown)"),
        ("info", "(3 more info lines like 'ESP_#_#_RED: # MB  https://example/#' not shown)"),
    ]
    assert throttle.finish() == []


def test_uncounted_progress_texts_keep_a_few_per_stage_and_empty_texts_none():
    throttle = FeedbackThrottle(lines_per_stage=2)
    shown = [
        t for m in ["", "A: 1.0 MB", "A: 2.0 MB", "A: 3.0 MB", "writing", "A: 4.0 MB"] for _, t in throttle.progress(m)
    ]
    assert shown == ["A: 1.0 MB", "A: 2.0 MB", "writing", "A: 4.0 MB"]
    assert stage_of("site 3/80 at -45.2") == "site #/# at -#"
