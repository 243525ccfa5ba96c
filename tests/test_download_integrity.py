"""Integrity of downloads and of the download folder (issue 26).

The cache never deletes or replaces a file MarsIce did not write; a resume appends only to the same version of
a file; an answer without a length that ends early is not a file; a trickling server cannot hold a try open;
ODE redirects to other hosts are refused; ``--max-gb`` never counts an unknown size as zero, and sizes are
probed several at a time.

Every server is local (127.0.0.1, see tests/catalogue_http.py). No test measures time: the slow servers are
bounded loops, and the tests assert on what the client reports and on what the server saw.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from marsice_plugin.catalogue.download import (
    PROBE_GIVE_UP,
    PROBE_WORKERS,
    CacheRecords,
    Downloader,
    FileRequest,
)
from marsice_plugin.catalogue.ode import ODEClient
from marsice_plugin.catalogue.search import SearchQuery
from marsice_plugin.errors import DownloadError, ODEError
from marsice_plugin.scan.plan import check_max_gb, pull_plan
from marsice_plugin.scan.tasks import ProductJob, drop_files

from .catalogue_http import LocalServer, file_bytes, ode_record, real_products
from .conftest import REPO

PID = "ESP_011319_1390_RED"
JP2 = f"{PID}.JP2"

#: Bytes a trickling server sends at most (one every 0.2 s): the client must hang up long before.
TRICKLE_BOUND = 150


class IntegrityServer(LocalServer):
    """The local file server plus answers without a length, cut chunked answers, trickles, HEAD crowds."""

    def __init__(self) -> None:
        super().__init__()
        self.trickled = 0
        self.trickle_done = threading.Event()
        self.lock = threading.Lock()
        self.active = self.peak = 0
        self.crowd = threading.Event()

    def _trickle(self, h, head: bytes, body: bytes) -> None:
        """``head`` at once, then ``body`` one byte every 0.2 s, until the client hangs up or the bound."""
        import time

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
        if scenario == "trickle" and not head:
            return self._trickle(h, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data), data)
        if scenario == "slowheaders":
            return self._trickle(h, b"", b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 1000 + b"\r\n\r\n")
        if scenario in ("nolength", "chunked") and first:
            return self._unframed(h, data, chunked=scenario == "chunked", complete=False)
        if scenario in ("nolength_full", "chunked_full") and not head:
            return self._unframed(h, data, chunked=scenario == "chunked_full", complete=True)
        if scenario == "ignoreifrange" and not head:  # a server that answers ranges without checking If-Range
            validators = self.validators(data, "files")
            rng = h.headers.get("Range")
            if first:  # the first answer is cut at 40 %
                h.send_response(200)
                h.send_header("Content-Length", str(len(data)))
                for k, v in validators.items():
                    h.send_header(k, v)
                h.end_headers()
                h.wfile.write(data[: len(data) * 2 // 5])
                h.wfile.flush()
                h.close_connection = True
                return None
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

    def ode(self, h, scenario, params):  # type: ignore[override]
        if scenario == "trickle":
            body = b'{"ODEResults": {"Status": "Success", "Products": "No Products Found"}}' * 10
            return self._trickle(h, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body), body)
        return super().ode(h, scenario, params)


@pytest.fixture
def server():
    with IntegrityServer() as s:
        s.files = {JP2: file_bytes(JP2), f"{PID}.LBL": file_bytes(f"{PID}.LBL", 9_000)}
        yield s


def downloader(folder: Path, **kw) -> Downloader:
    kw = {"sleep": lambda s: None, "timeout_s": 10, **kw}
    return Downloader(folder, backoff_s=0.25, chunk_bytes=8192, **kw)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def digests(folder: Path, names) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def user_files(folder: Path) -> dict[str, str]:
    """A user's own files in the download folder (a GeoTIFF, notes, a hand-fixed copy): what must survive."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "my_mosaic.tif").write_bytes(file_bytes("mosaic", 200_000))
    (folder / "notes.txt").write_text("sites to revisit\n")
    (folder / ".hidden_settings").write_bytes(b"mine")
    for name in ("my_mosaic.tif", "notes.txt", ".hidden_settings"):
        os.utime(folder / name, (1, 1))  # older than anything MarsIce downloads: first in line for an LRU
    return digests(folder, ["my_mosaic.tif", "notes.txt", ".hidden_settings"])


def marsice(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marsice_plugin", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


# -- the cache deletes only what MarsIce wrote ------------------------------------------------------
def test_cli_eviction_reports_each_file_and_keeps_the_users_files_byte_identical(server, tmp_path):
    template = real_products()[1]
    ids = ["ESP_011319_1390_RED", "ESP_011320_1390_RED"]
    server.files = {}
    server.products = []
    for i, pid in enumerate(ids):
        files = {f"{pid}.JP2": file_bytes(f"{pid}.JP2"), f"{pid}.LBL": file_bytes(f"{pid}.LBL", 9_000)}
        server.files.update(files)
        server.products.append(ode_record(template, pid, -49.0, 298.95 + i, 150.0, server.base, files))
    out = tmp_path / "downloads"
    before = user_files(out)
    common = ["--to", str(out), "--source", "ode", "--ode-url", f"{server.base}/byid/live2/"]
    first = marsice("download", ids[0], *common)
    assert first.returncode == 0, first.stderr
    # 200 kB of the user's + 159 kB of the first product; a limit of 362 kB leaves room for the second only
    # if the first one's files go, whatever the age of the user's files
    second = marsice("download", ids[1], *common, "--cache-gb", "0.000362")
    assert second.returncode == 0, second.stderr
    evictions = [line for line in second.stderr.splitlines() if "cache: evicted" in line]
    assert len(evictions) == 2 and all("downloaded by MarsIce" in line for line in evictions)
    assert {line.split("evicted ")[1].split(" ")[0] for line in evictions} == {f"{ids[0]}.JP2", f"{ids[0]}.LBL"}
    assert listing(out) == [".hidden_settings", ".marsice", f"{ids[1]}.JP2", f"{ids[1]}.LBL", "my_mosaic.tif",
                            "notes.txt"]  # fmt: skip
    assert digests(out, before) == before
    # a limit that evicting every MarsIce file cannot meet: refused before anything is deleted, exit 5
    third = marsice("download", ids[0], *common, "--cache-gb", "0.0003")
    assert third.returncode == 5 and "cache: evicted" not in third.stderr
    assert "holds 0.2 MB of files MarsIce did not download, which it never deletes" in third.stderr
    assert digests(out, before) == before and not (out / f"{ids[0]}.JP2").exists()
    assert (out / f"{ids[1]}.JP2").read_bytes() == server.files[f"{ids[1]}.JP2"]


def test_a_file_the_user_replaced_is_theirs_and_never_evicted(server, tmp_path):
    d = downloader(tmp_path)
    path = d.fetch(FileRequest.from_url(PID, f"{server.base}/files/{JP2}"))
    assert CacheRecords(tmp_path).owns(path)
    path.write_bytes(b"my own version of the image" * 1000)  # replaced by hand: another size
    mine = digests(tmp_path, [JP2])
    d = downloader(tmp_path, max_cache_bytes=30_000)
    with pytest.raises(DownloadError, match=r"holds 0\.0 MB of files MarsIce did not download.*raise --cache-gb"):
        d.fetch(FileRequest.from_url(PID, f"{server.base}/files/{PID}.LBL"))
    assert digests(tmp_path, [JP2]) == mine


def test_a_users_file_under_a_products_name_is_neither_replaced_nor_touched(server, tmp_path):
    (tmp_path / JP2).write_bytes(b"a cut copy the user keeps")
    os.utime(tmp_path / JP2, (1, 1))
    mine = digests(tmp_path, [JP2])
    with pytest.raises(DownloadError, match=r"MarsIce did not download it, so it is neither used nor replaced"):
        downloader(tmp_path).fetch(FileRequest.from_url(PID, f"{server.base}/files/{JP2}", 150_000 // 1024))
    assert digests(tmp_path, [JP2]) == mine and server.requests == []
    # the right size: used as it is, and not even its time stamp changes (only MarsIce's files are "used")
    (tmp_path / f"{PID}.LBL").write_bytes(server.files[f"{PID}.LBL"])
    os.utime(tmp_path / f"{PID}.LBL", (1, 1))
    path = downloader(tmp_path).fetch(FileRequest.from_url(PID, f"{server.base}/files/{PID}.LBL", 9_000 // 1024))
    assert path.stat().st_mtime == 1 and server.requests == []


def test_scan_drops_only_files_marsice_downloaded(server, tmp_path):
    d = downloader(tmp_path)
    d.fetch(FileRequest.from_url(PID, f"{server.base}/files/{JP2}"))
    (tmp_path / f"{PID}.LBL").write_bytes(b"the user's label")  # same name as the product's, not MarsIce's
    job = ProductJob(PID, (), str(tmp_path), "model.keras")
    assert drop_files(job, [JP2, f"{PID}.LBL"]) == 150_000
    assert listing(tmp_path) == [f"{PID}.LBL"]  # the records' subfolder went with the last record
    assert (tmp_path / f"{PID}.LBL").read_bytes() == b"the user's label"


def _churn(folder: str, k: int) -> None:
    """One process adding and removing records, the last of which also removes the shared subfolder."""
    records = CacheRecords(Path(folder))
    for i in range(150):
        f = Path(folder) / f"F{k}_{i}.JP2"
        f.write_bytes(b"x" * (i + 1))
        records.add(f, "http://127.0.0.1/x", None)
        records.remove(f.name)
        f.unlink()
    keep = Path(folder) / f"KEEP{k}.JP2"
    keep.write_bytes(b"k" * (k + 1))
    records.add(keep, "http://127.0.0.1/x", None)


def test_records_of_concurrent_processes_are_never_lost(tmp_path):
    with ProcessPoolExecutor(max_workers=4) as pool:
        list(pool.map(_churn, [str(tmp_path)] * 4, range(4)))
    records = CacheRecords(tmp_path)
    assert all(records.owns(tmp_path / f"KEEP{k}.JP2") for k in range(4))
    assert listing(tmp_path / ".marsice") == [f"KEEP{k}.JP2.json" for k in range(4)]


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


# -- trickles --------------------------------------------------------------------------------------
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
