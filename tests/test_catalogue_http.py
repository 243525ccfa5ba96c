"""The safeguards every catalogue request goes through (catalogue/http.py), as downloads and ODE searches see them.

A server that trickles the headers or the body of an answer cannot hold a request open; a body shorter than its
``Content-Length`` is a cut connection, retried; the minimum rate is judged over whole windows.

Every server is local (127.0.0.1, see tests/catalogue_http.py). No test measures time: the slow servers are
bounded loops, the rate guard runs on a clock the test sets, and the tests assert on what the client reports and
on what the server saw.
"""

from __future__ import annotations

import threading
import time

import pytest

from marsice_plugin.catalogue.download import FileRequest
from marsice_plugin.catalogue.http import RateGuard, StalledTransferError
from marsice_plugin.catalogue.ode import ODEClient
from marsice_plugin.catalogue.search import SearchQuery
from marsice_plugin.errors import DownloadError, ODEError

from .catalogue_http import LocalServer, downloader, file_bytes

PID = "ESP_011319_1390_RED"
JP2 = f"{PID}.JP2"

#: Bytes a trickling server sends at most (one every 0.2 s): the client must hang up long before.
TRICKLE_BOUND = 150


class SlowServer(LocalServer):
    """The local file server and ODE stand-in plus trickled bodies and headers, and ODE answers cut short."""

    def __init__(self) -> None:
        super().__init__()
        self.trickled = 0
        self.trickle_done = threading.Event()

    def _trickle(self, h, head: bytes, body: bytes) -> None:
        """``head`` at once, then ``body`` one byte every 0.2 s, until the client hangs up or the bound."""
        try:
            h.wfile.write(head)
            h.wfile.flush()
            for i in range(min(TRICKLE_BOUND, len(body))):
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
                self.trickled = i + 1
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            h.close_connection = True
            self.trickle_done.set()

    def serve_file(self, h, scenario, name, head):  # type: ignore[override]
        data = self.files.get(name)
        if data is not None and scenario == "trickle" and not head:
            return self._trickle(h, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data), data)
        if data is not None and scenario == "slowheaders":
            return self._trickle(h, b"", b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 1000 + b"\r\n\r\n")
        return super().serve_file(h, scenario, name, head)

    def ode(self, h, scenario, params):  # type: ignore[override]
        if scenario == "trickle":
            body = b'{"ODEResults": {"Status": "Success", "Products": "No Products Found"}}' * 10
            return self._trickle(h, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body), body)
        if scenario == "cut" or (scenario == "cut_once" and self.count("cut_once") == 1):
            # Announces the whole answer, sends 30 bytes of it, then closes the connection.
            body = b'{"ODEResults": {"Status": "Success", "Products": "No Products Found"}}'
            return self.send_and_close(h, body[:30], len(body), {"Content-Type": "application/json"})
        return super().ode(h, scenario, params)


@pytest.fixture
def server():
    with SlowServer() as s:
        s.files = {JP2: file_bytes(JP2)}
        yield s


# -- trickles: every request is bounded in time --------------------------------------------------
def test_a_trickling_body_is_abandoned_as_stalled(server, tmp_path):
    d = downloader(tmp_path, retries=0, timeout_s=1)
    with pytest.raises(DownloadError, match=r"stalled: only \d+ bytes in 1\.\d s, under the 1 KiB/s .*--timeout"):
        d.fetch(FileRequest.from_url(PID, f"{server.base}/trickle/{JP2}"))
    assert server.trickle_done.wait(60)
    assert server.trickled < TRICKLE_BOUND // 3  # the client hung up: the server's writes failed early


def test_trickling_headers_are_abandoned_by_the_deadline(server, tmp_path):
    d = downloader(tmp_path, retries=0, timeout_s=1)
    with pytest.raises(DownloadError, match=r"failed after 1 tries \(no answer within 1 s\)"):
        d.fetch(FileRequest.from_url(PID, f"{server.base}/slowheaders/{JP2}"))
    assert server.trickle_done.wait(60) and server.trickled < TRICKLE_BOUND // 3


def test_a_trickling_ode_answer_is_abandoned_as_stalled(server):
    client = ODEClient(f"{server.base}/trickle/live2/", timeout_s=1, retries=0, sleep=lambda s: None)
    with pytest.raises(ODEError, match=r"failed after 1 tries: stalled: only \d+ bytes in 1\.\d s"):
        client.search(SearchQuery(lat=(-60, -40)))
    assert server.trickle_done.wait(60) and server.trickled < TRICKLE_BOUND // 3


# -- cut bodies ------------------------------------------------------------------------------------
def test_an_ode_answer_shorter_than_announced_is_a_cut_connection_and_retried(server):
    query = SearchQuery(lat=(-60, -40))
    with pytest.raises(
        ODEError, match=r"failed after 1 tries: connection failed \(IncompleteRead\(30 bytes read, 40 more"
    ):
        ODEClient(f"{server.base}/cut/live2/", retries=0, sleep=lambda s: None).search(query)
    # cut once, then whole: the retry's answer is the one read
    assert ODEClient(f"{server.base}/cut_once/live2/", retries=1, sleep=lambda s: None).search(query) == []
    assert [path for path, _, _ in server.requests] == ["/cut/live2/", "/cut_once/live2/", "/cut_once/live2/"]


# -- the minimum rate ------------------------------------------------------------------------------
def test_the_rate_is_judged_over_whole_windows_and_each_full_window_starts_again():
    now = [0.0]
    guard = RateGuard(10, min_rate=1024, clock=lambda: now[0])
    now[0] = 10.0
    guard.add(10_240)  # exactly 1 KiB/s over the first window: kept, and the next window starts
    now[0] = 15.0
    guard.add(10)  # half a window: too soon to judge, however slow
    now[0] = 20.5
    with pytest.raises(StalledTransferError, match=r"^stalled: only 10 bytes in 10\.5 s, under the 1 KiB/s a transfer "
                       r"must keep up over every 10 s \(--timeout\)$"):  # fmt: skip
        guard.add(0)
