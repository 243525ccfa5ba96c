"""Integrity of downloads (issue 26); the cache folder's guarantees are tested in tests/test_catalogue_cache.py,
the time bounds of every request in tests/test_catalogue_http.py.

A resume appends only to the same version of a file; an answer without a length that ends early is not a file;
``--max-gb`` never counts an unknown size as zero, and sizes are probed several at a time.

Every server is local (127.0.0.1, see tests/catalogue_http.py). No test measures time: the server holding HEAD
requests waits a bounded time, and the tests assert on what the client reports and on what the server saw.
"""

from __future__ import annotations

import socket
import threading

import pytest

from marsice_plugin.catalogue.download import PROBE_GIVE_UP, PROBE_WORKERS, Downloader, FileRequest
from marsice_plugin.errors import DownloadError
from marsice_plugin.scan.plan import check_max_gb, pull_plan
from marsice_plugin.scan.tasks import ProductJob

from .catalogue_http import LocalServer, downloader, file_bytes, listing, marsice, ode_record, real_products

PID = "ESP_011319_1390_RED"
JP2 = f"{PID}.JP2"


class IntegrityServer(LocalServer):
    """The local file server plus answers without a length, cut chunked answers, HEAD crowds."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.active = self.peak = 0
        self.crowd = threading.Event()

    def _unframed(self, h, data: bytes, chunked: bool, complete: bool) -> None:
        """A 200 answer without Content-Length: chunked or ended by closing; cut at 40 % unless ``complete``."""
        h.send_response(200)
        for k, v in self.validators(data, "files").items():
            h.send_header(k, v)
        h.send_header("Transfer-Encoding" if chunked else "Connection", "chunked" if chunked else "close")
        h.end_headers()
        body = data if complete else data[: len(data) * 2 // 5]
        for i in range(0, len(body), 8192):
            piece = body[i : i + 8192]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked and complete:
            h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
        h.close_connection = True

    def serve_file(self, h, scenario, name, head):  # type: ignore[override]
        data = self.files.get(name)
        if data is None:
            return super().serve_file(h, scenario, name, head)
        first = not head and self.count(f"integrity:{scenario}:{name}") == 1
        if scenario in ("nolength", "chunked") and first:
            return self._unframed(h, data, chunked=scenario == "chunked", complete=False)
        if scenario in ("nolength_full", "chunked_full") and not head:
            return self._unframed(h, data, chunked=scenario == "chunked_full", complete=True)
        if scenario == "ignoreifrange" and not head:  # a server that answers ranges without checking If-Range
            validators = self.validators(data, "files")
            rng = h.headers.get("Range")
            if first:  # the first answer is cut at 40 %
                return self.send_and_close(h, data[: len(data) * 2 // 5], len(data), validators)
            if rng:
                start = int(rng[6:].split("-")[0])
                headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}", **validators}
                return self.send(h, 206, data[start:], headers)
            return self.send(h, 200, data, validators)
        if scenario == "crowd" and head:  # hold each HEAD until 8 are in flight at once (bounded wait)
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
                if self.active >= PROBE_WORKERS:
                    self.crowd.set()
            if not self.crowd.wait(10):  # a client probing one at a time: stop holding anyone
                self.crowd.set()
            with self.lock:
                self.active -= 1
        if scenario == "nohead" and head:  # HEAD answered without a length
            h.send_response(200)
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            return None
        own = ("nolength", "chunked", "ignoreifrange", "crowd", "nohead")
        return super().serve_file(h, "files" if scenario in own else scenario, name, head)


@pytest.fixture
def server():
    with IntegrityServer() as s:
        s.files = {JP2: file_bytes(JP2), f"{PID}.LBL": file_bytes(f"{PID}.LBL", 9_000)}
        yield s


# -- resumes only onto the same version -------------------------------------------------------------
def test_a_file_changed_on_the_server_restarts_from_byte_0(server, tmp_path):
    new = file_bytes("the reprocessed version", 150_000)
    d = downloader(tmp_path, sleep=lambda s: server.files.update({JP2: new}))  # changes during the backoff
    old_etag = server.etag(server.files[JP2])
    path = d.fetch(FileRequest.from_url(PID, f"{server.base}/drop/{JP2}"))
    assert path.read_bytes() == new  # not 40 % of the old version followed by the rest of the new one
    sent = [(headers.get("Range"), headers.get("If-Range")) for _, _, headers in server.requests]
    assert sent == [(None, None), ("bytes=60000-", old_etag)]


def test_a_server_that_ignores_if_range_is_caught_by_the_etag(server, tmp_path):
    new = file_bytes("the reprocessed version", 150_000)
    d = downloader(tmp_path, sleep=lambda s: server.files.update({JP2: new}))
    path = d.fetch(FileRequest.from_url(PID, f"{server.base}/ignoreifrange/{JP2}"))
    assert path.read_bytes() == new
    assert [headers.get("Range") for _, _, headers in server.requests] == [None, "bytes=60000-", None]


def test_no_validator_means_no_resume(server, tmp_path):
    d = downloader(tmp_path)
    path = d.fetch(FileRequest.from_url(PID, f"{server.base}/novalidator/{JP2}"))
    assert path.read_bytes() == server.files[JP2]
    assert [headers.get("Range") for _, _, headers in server.requests] == [None, None]
    d = downloader(tmp_path / "b", retries=0)
    with pytest.raises(DownloadError, match=r"gives no ETag or Last-Modified.*deleted; run the same command again"):
        d.fetch(FileRequest.from_url(PID, f"{server.base}/novalidator/{PID}.LBL"))
    assert listing(tmp_path / "b") == []


# -- answers without a length -----------------------------------------------------------------------
@pytest.mark.parametrize("scenario", ["nolength", "chunked"])
def test_an_answer_without_length_that_ends_early_is_a_failed_try_then_resumed(server, tmp_path, scenario):
    req = FileRequest.from_url(PID, f"{server.base}/{scenario}/{JP2}", 150_000 // 1024)
    with pytest.raises(DownloadError, match=r"failed after 1 tries") as failed:
        downloader(tmp_path, retries=0).fetch(req)
    if scenario == "chunked":  # http.client tells a cut chunked body by its missing last chunk
        assert "connection lost at byte 60000 (IncompleteRead" in str(failed.value)
    else:  # a close-delimited one ends like a complete answer: only the listed size shows it is short
        assert "connection closed at byte 60000, short of the 146 KiB listed" in str(failed.value)
    assert not (tmp_path / JP2).exists() and (tmp_path / f".{JP2}.partial").stat().st_size == 60_000
    path = downloader(tmp_path).fetch(req)  # the next run resumes the 40 % received
    assert path.read_bytes() == server.files[JP2]
    assert server.requests[-1][2].get("Range") == "bytes=60000-"


def test_unframed_answers_complete_or_refused(server, tmp_path):
    # a complete chunked answer proves its own end: accepted without a listed size
    path = downloader(tmp_path).fetch(FileRequest.from_url(PID, f"{server.base}/chunked_full/{JP2}"))
    assert path.read_bytes() == server.files[JP2]
    # a close-delimited one is accepted when the listing's size confirms it ...
    ok = downloader(tmp_path / "a").fetch(FileRequest.from_url(PID, f"{server.base}/nolength_full/{JP2}", 146))
    assert ok.read_bytes() == server.files[JP2]
    # ... and refused without one: its end cannot be told from a cut
    with pytest.raises(DownloadError, match=r"without a length .* cannot be told from the end of the file"):
        downloader(tmp_path / "b").fetch(FileRequest.from_url(PID, f"{server.base}/nolength_full/{JP2}"))
    assert listing(tmp_path / "b") == []


# -- sizes: probed concurrently, unknown never zero -------------------------------------------------
def test_sizes_are_probed_eight_at_a_time(server, tmp_path):
    names = [f"ESP_0{i:05d}_1390_RED.JP2" for i in range(24)]
    server.files = {n: file_bytes(n, 1000 + i) for i, n in enumerate(names)}
    sizes = downloader(tmp_path).probe_sizes([f"{server.base}/crowd/{n}" for n in names])
    assert sizes == {f"{server.base}/crowd/{n}": 1000 + i for i, n in enumerate(names)}
    assert server.peak == PROBE_WORKERS  # eight in flight at once, never more
    assert listing(tmp_path) == []


def test_an_unreachable_host_is_not_probed_file_after_file(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed again below: connections are refused
    calls: list[str] = []

    class Counting(Downloader):
        def _probe(self, url):
            calls.append(url)
            return super()._probe(url)

    urls = [f"http://127.0.0.1:{port}/x/ESP_0{i:05d}_1390_RED.JP2" for i in range(60)]
    assert Counting(tmp_path, timeout_s=5).probe_sizes(urls) == dict.fromkeys(urls)
    assert len(calls) <= PROBE_GIVE_UP + PROBE_WORKERS - 1


def _unknown_size_products(server: IntegrityServer) -> list[str]:
    """Two products whose listing gives no sizes and whose server announces none to HEAD."""
    template = real_products()[1]
    ids = ["ESP_011319_1390_RED", "ESP_011320_1390_RED"]
    server.files, server.products = {}, []
    for i, pid in enumerate(ids):
        files = {f"{pid}.JP2": file_bytes(f"{pid}.JP2", 30_000), f"{pid}.LBL": file_bytes(f"{pid}.LBL", 2_000)}
        server.files.update(files)
        record = ode_record(template, pid, -49.0, 298.95 + i, 150.0, server.base, files)
        for f in record["Product_files"]["Product_file"]:
            del f["KBytes"]
            f["URL"] = f["URL"].replace("/files/", "/nohead/")
        server.products.append(record)
    return ids


def test_cli_max_gb_refuses_unknown_sizes_unless_allowed(server, tmp_path):
    ids = _unknown_size_products(server)
    out = tmp_path / "out"
    common = [*ids, "--to", str(out), "--source", "ode", "--ode-url", f"{server.base}/byid/live2/"]
    dry = marsice("download", *common, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 4 files, 0.000 GB + 4 files of unknown size (not counted); nothing downloaded" in dry.stdout
    capped = marsice("download", *common, "--max-gb", "1")
    assert capped.returncode == 5
    assert "4 files of unknown size" in capped.stderr and "could exceed --max-gb 1" in capped.stderr
    assert "--allow-unknown-size" in capped.stderr and not out.exists()
    heads = [path for path, _, headers in server.requests if path.startswith("/nohead/")]
    assert len(heads) == 8  # each of the 4 files probed once per run that needed sizes (dry run, capped run)
    ok = marsice("download", *common, "--max-gb", "1", "--allow-unknown-size")
    assert ok.returncode == 0, ok.stderr
    assert all((out / name).read_bytes() == data for name, data in server.files.items())


def test_scan_plan_probes_concurrently_and_refuses_unknown_sizes_under_max_gb(server, tmp_path):
    pids = [f"ESP_0{i:05d}_1390_RED" for i in range(6)]
    server.files = {f"{p}{ext}": file_bytes(p + ext, 5_000) for p in pids for ext in (".JP2", ".LBL")}

    def job(pid: str, scenario: str) -> ProductJob:
        files = tuple(FileRequest.from_url(pid, f"{server.base}/{scenario}/{pid}{ext}") for ext in (".JP2", ".LBL"))
        return ProductJob(pid, files, str(tmp_path), "model.keras")

    plan = pull_plan([job(p, "crowd") for p in pids[:5]] + [job(pids[5], "nohead")], tmp_path)
    assert server.peak == PROBE_WORKERS
    assert plan.known_bytes == 10 * 5_000 and plan.unknown == 2
    assert plan.text() == "6 products, 12 files, 0.000 GB + 2 files of unknown size (not counted)"
    refused = r"2 files of unknown size \(not counted\), so it could exceed --max-gb 1 .*--allow-unknown-size"
    with pytest.raises(DownloadError, match=refused):
        check_max_gb(plan, 1.0)
    check_max_gb(plan, 1.0, allow_unknown=True)
    check_max_gb(plan, None)
