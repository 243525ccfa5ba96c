"""Hostile servers, the remaining cases of issue 12: huge and HTML ODE answers, sizes that lie, absolute names.

All against 127.0.0.1 (tests/catalogue_http.py), with the extra scenarios of :class:`HostileServer`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from marsice_plugin.catalogue.download import Downloader, FileRequest
from marsice_plugin.catalogue.ode import DEFAULT_MAX_RESPONSE_MB, ODE_MAX_MB_VARIABLE, ODEClient
from marsice_plugin.catalogue.search import SearchQuery
from marsice_plugin.errors import DownloadError, ODEError

from .catalogue_http import LocalServer, file_bytes
from .conftest import REPO

PID = "ESP_011319_1390_RED"

#: The most a "huge" answer sends before giving up (the client must stop long before).
HUGE_BOUND = 512 * 2**20


class HostileServer(LocalServer):
    """The local ODE stand-in plus: an HTML page with status 200, a huge answer (announced or streamed without
    end), and a file server that announces fewer bytes than it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def ode(self, h, scenario, params):  # type: ignore[override]
        if scenario == "html200":
            page = b"<!DOCTYPE html><html><body><h1>Scheduled maintenance</h1></body></html>"
            return self.send(h, 200, page, {"Content-Type": "text/html"})
        if scenario == "huge_announced":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(10 * 2**30))
            h.end_headers()
            h.close_connection = True
            return None
        if scenario == "huge_stream":  # no length: the body ends when the connection closes, i.e. never
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Connection", "close")
            h.end_headers()
            block = b'{"ODEResults": {"Products": {"Product": [' + b" " * 65_000
            try:
                while self.sent < HUGE_BOUND:
                    h.wfile.write(block)
                    self.sent += len(block)
            except (BrokenPipeError, ConnectionResetError):
                pass
            h.close_connection = True
            return None
        return super().ode(h, scenario, params)

    def serve_file(self, h, scenario, name, head):  # type: ignore[override]
        data = self.files.get(name)
        if scenario == "long" and data is not None and not head:
            # Announces 5,000 bytes fewer than it sends.
            return self.send_and_close(h, data, len(data) - 5000)
        return super().serve_file(h, scenario, name, head)


@pytest.fixture(scope="module")
def shared_server():
    with HostileServer() as s:  # one server for the module: each shutdown waits for its 0.5 s poll
        s.files = {f"{PID}.JP2": file_bytes(f"{PID}.JP2")}
        yield s


@pytest.fixture
def server(shared_server):
    shared_server.requests.clear()
    shared_server.sent = 0
    return shared_server


def _client(server: HostileServer, scenario: str, **kw) -> ODEClient:
    return ODEClient(f"{server.base}/{scenario}/live2/", retries=0, sleep=lambda s: None, **kw)


def test_default_response_limit_is_64_mib(monkeypatch):
    monkeypatch.delenv(ODE_MAX_MB_VARIABLE, raising=False)
    assert DEFAULT_MAX_RESPONSE_MB == 64 and ODEClient().max_response_bytes == 64 * 2**20
    monkeypatch.setenv(ODE_MAX_MB_VARIABLE, "0.5")
    assert ODEClient().max_response_bytes == 2**19
    monkeypatch.setenv(ODE_MAX_MB_VARIABLE, "lots")
    with pytest.raises(ODEError, match="MARSICE_ODE_MAX_MB='lots' must be a positive number of MiB"):
        ODEClient()


def test_huge_announced_ode_answer_is_refused_before_reading(server):
    with pytest.raises(ODEError, match=r"announced an answer of 10240 MiB, more than the 64 MiB .*narrow the search"):
        _client(server, "huge_announced").search(SearchQuery(lat=(-60, -40)))
    assert len(server.requests) == 1  # not retried: the same query would get the same answer


def test_endless_ode_answer_stops_at_the_limit(server):
    with pytest.raises(ODEError, match=r"kept sending, more than the 1 MiB read from one answer; narrow the search"):
        _client(server, "huge_stream", max_response_bytes=2**20).search(SearchQuery(lat=(-60, -40)))
    assert len(server.requests) == 1
    # The client hung up after its 1 MiB: the server's writes failed long before its bound.
    assert server.sent < HUGE_BOUND // 4


def test_cli_search_with_a_huge_answer_fails_with_one_line(server):
    env = {**os.environ, ODE_MAX_MB_VARIABLE: "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "marsice_plugin", "search", "--lat", "-60", "-40", "--source", "ode",
         "--ode-url", f"{server.base}/huge_stream/live2/"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 5
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marsice: error: ODE at "), proc.stderr
    assert "more than the 1 MiB read from one answer; narrow the search (--lat, --ls, --lon)" in lines[0]


def test_html_page_with_status_200_is_a_malformed_answer(server):
    with pytest.raises(ODEError, match=r"returned a malformed answer \(JSONDecodeError.*check --ode-url"):
        _client(server, "html200").search(SearchQuery(lat=(-60, -40)))


def test_http_404_is_reported_without_retrying(server):
    with pytest.raises(ODEError, match=r"ODE answered HTTP 404 Not Found for .*; check --ode-url"):
        ODEClient(f"{server.base}/not/the/ode/", retries=3, sleep=lambda s: None).search(SearchQuery(lat=(-60, -40)))
    assert len(server.requests) == 1


def test_download_longer_than_announced_is_caught_by_the_listed_size(server, tmp_path):
    """HTTP stops at the announced length; the listing's size is what catches the short copy."""
    d = Downloader(tmp_path, retries=0, sleep=lambda s: None)
    with pytest.raises(
        DownloadError, match=r"received 145000 bytes but the listing says 146 KiB; the file was deleted"
    ):
        d.fetch(FileRequest.from_url(PID, f"{server.base}/long/{PID}.JP2", 150_000 // 1024))
    assert list(tmp_path.iterdir()) == []


def test_download_longer_than_the_listing_is_deleted(server, tmp_path):
    d = Downloader(tmp_path, retries=0, sleep=lambda s: None)
    with pytest.raises(
        DownloadError, match=r"received 150000 bytes but the listing says 100 KiB; the file was deleted"
    ):
        d.fetch(FileRequest.from_url(PID, f"{server.base}/files/{PID}.JP2", 100))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/files/%2Fetc%2Fpasswd", None),  # an absolute path hidden in the URL's last segment
        ("/files/x.JP2", "/tmp/evil.JP2"),  # an absolute FileName in a listing
        ("/files/..%2F..%2Fhome%2Fevil.JP2", None),
    ],
)
def test_absolute_and_traversing_file_names_are_refused(server, tmp_path, url, name):
    with pytest.raises(DownloadError, match="refusing file name .*only plain names"):
        FileRequest.from_url(PID, server.base + url, name=name)
    assert server.requests == []  # refused before anything is fetched
