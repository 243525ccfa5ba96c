"""The background-prefetch helper both the band reader and the CNN feeder run on: order, bounds, errors, close."""

from __future__ import annotations

import threading

import pytest

from marsice_plugin.prefetch import Prefetch


def _alive(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_items_come_in_order_and_no_thread_is_left():
    with Prefetch(lambda: iter(range(50)), depth=3, name="test-prefetch-order") as prefetch:
        assert list(prefetch) == list(range(50))
    assert _alive("test-prefetch-order") == []


def test_the_producer_runs_at_most_depth_items_ahead():
    produced: list[int] = []

    def make():
        for i in range(40):
            produced.append(i)
            yield i

    depth = 2
    with Prefetch(make, depth=depth, name="test-prefetch-bound") as prefetch:
        for n, item in enumerate(prefetch):
            assert item == n
            # queued (depth) + the one the producer holds while it waits for room, beyond the n + 1 handed out
            assert len(produced) <= n + 1 + depth + 1
    assert produced == list(range(40))


def test_an_error_reaches_the_consumer_after_the_items_made_before_it():
    def make():
        yield "first"
        yield "second"
        raise OSError("decoder failed at row 4096")

    received = []
    with Prefetch(make, depth=4, name="test-prefetch-error") as prefetch, pytest.raises(OSError, match="row 4096"):
        for item in prefetch:
            received.append(item)
    assert received == ["first", "second"]
    assert _alive("test-prefetch-error") == []


def test_an_error_making_the_iterator_reaches_the_consumer():
    def make():
        raise ValueError("cannot open the band reader")

    with Prefetch(make, name="test-prefetch-make") as prefetch, pytest.raises(ValueError, match="band reader"):
        list(prefetch)
    assert _alive("test-prefetch-make") == []


def test_close_mid_stream_stops_the_producer_and_closes_its_iterator_in_its_thread():
    produced: list[int] = []
    closed_in: list[str] = []

    def endless():
        i = 0
        try:
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:  # a generator's cleanup (a rasterio.Env, say) runs in the thread that entered it
            closed_in.append(threading.current_thread().name)

    prefetch = Prefetch(endless, depth=2, name="test-prefetch-close")
    stream = iter(prefetch)
    assert [next(stream), next(stream)] == [0, 1]
    prefetch.close()
    assert _alive("test-prefetch-close") == []
    assert closed_in == ["test-prefetch-close"]
    count = len(produced)
    assert count <= 2 + 2 + 1  # bounded: the two taken, two queued, one in hand
    assert len(list(stream)) <= 2  # after close, iterating ends with what was left queued, never waits
    assert len(produced) == count  # and nothing more was made
