"""Producing items ahead of their consumer in a background thread: one helper for every such stage.

Two stages of a detection overlap this way: the chunk reader decodes the next band of rows while the chunks
of the current one are cut (:mod:`marsice_plugin.chunk_reader`), and the feeder prepares the next CNN batches
while the model scores one (:mod:`marsice_plugin.cnn.inference`). Both spend their time in C code that
releases the GIL (OpenJPEG, NumPy), which is what makes a thread enough. What they need is the same, so it
lives here once:

* order: items come out in the order the producer made them;
* a bounded queue (``depth`` items), so memory stays at a few items whatever the product's size;
* errors raised while producing (a corrupt JPEG2000, say) are re-raised in the consuming thread, after the
  items made before them;
* :meth:`Prefetch.close` (also on leaving a ``with`` block, e.g. on cancel) stops the producer before its
  next item and *waits* for its thread, and the producer's iterator is closed in its own thread (so a
  ``with rasterio.Env`` inside a generator is left where it was entered): a dataset is never closed under a
  running read, and no thread is left behind.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_END = object()


class Prefetch(Generic[T]):
    """Runs ``make()`` in a thread named ``name`` and hands its items over, at most ``depth`` ahead."""

    def __init__(self, make: Callable[[], Iterable[T]], depth: int = 1, name: str = "marsice-prefetch"):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Queue ``item``, waiting for room; False (not queued) once :meth:`close` was called."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, make: Callable[[], Iterable[T]]) -> None:
        source: Any = None
        try:
            source = make()
            items = iter(source)
            while not self._stop.is_set():  # checked before each item: a closed prefetch makes no more
                try:
                    item = next(items)
                except StopIteration:
                    self._put(_END)
                    return
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread, which re-raises it
            self._put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set() and not self._thread.is_alive():
                    return  # closed: nothing more will come
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop producing and wait for the thread, so nothing it reads is closed under it."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)  # room for a producer blocked on a full queue
            self._thread.join(timeout=0.05)

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
