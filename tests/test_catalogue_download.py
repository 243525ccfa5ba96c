"""Downloads from a local file server that drops connections, lies about sizes and redirects away."""

from __future__ import annotations

import json
import sqlite3

import pytest

from marsice_plugin.catalogue.download import FileRequest, safe_file_name, validate_product_id
from marsice_plugin.errors import DownloadError

from .catalogue_http import LocalServer, downloader, file_bytes, listing, marsice, real_products, southern_product

PID = "ESP_011319_1390_RED"


@pytest.fixture
def server():
    with LocalServer() as s:
        s.files = {f"{PID}.JP2": file_bytes(f"{PID}.JP2"), f"{PID}.LBL": file_bytes(f"{PID}.LBL", 9_000)}
        yield s


def test_plain_download_checks_size_and_renames(server, tmp_path):
    seen = []
    d = downloader(tmp_path, progress=lambda name, done, total: seen.append((done, total)))
    path = d.fetch(FileRequest.from_url(PID, f"{server.base}/files/{PID}.JP2", 150_000 // 1024))
    assert path == tmp_path / f"{PID}.JP2"
    assert path.read_bytes() == server.files[f"{PID}.JP2"]
    assert listing(tmp_path) == [".marsice", f"{PID}.JP2"]  # the file and MarsIce's record of it
    record = json.loads((tmp_path / ".marsice" / f"{PID}.JP2.json").read_text())
    assert record["size"] == 150_000 and record["etag"] == server.etag(server.files[f"{PID}.JP2"])
    assert seen[-1] == (150_000, 150_000) and len(seen) == -(-150_000 // 8192)
    # a second fetch is a cache hit: no request
    before = len(server.requests)
    assert d.fetch(FileRequest.from_url(PID, f"{server.base}/files/{PID}.JP2", 146)) == path
    assert len(server.requests) == before


def test_dropped_connection_resumes_with_range(server, tmp_path):
    d = downloader(tmp_path)
    path = d.fetch(FileRequest.from_url(PID, f"{server.base}/drop/{PID}.JP2"))
    assert path.read_bytes() == server.files[f"{PID}.JP2"]
    ranges = [(headers.get("Range"), headers.get("If-Range")) for _, _, headers in server.requests]
    assert ranges == [(None, None), (f"bytes={150_000 * 2 // 5}-", server.etag(server.files[f"{PID}.JP2"]))]
    assert d.sleeps == [0.25]
    assert listing(tmp_path) == [".marsice", f"{PID}.JP2"]
    assert listing(tmp_path / ".marsice") == [f"{PID}.JP2.json"]  # the partial's record went with it


def test_server_that_never_delivers_the_announced_size_fails_cleanly(server, tmp_path):
    d = downloader(tmp_path, retries=2)
    with pytest.raises(DownloadError, match=r"failed after 3 tries .*closed at byte .*run the same command again"):
        d.fetch(FileRequest.from_url(PID, f"{server.base}/liar/{PID}.JP2"))
    assert not (tmp_path / f"{PID}.JP2").exists()  # never a file under the real name
    assert d.sleeps == [0.25, 0.5]


def test_size_different_from_the_listing_deletes_the_file(server, tmp_path):
    d = downloader(tmp_path)
    with pytest.raises(DownloadError, match=r"listing says 300 KiB; the file was deleted"):
        d.fetch(FileRequest.from_url(PID, f"{server.base}/files/{PID}.JP2", 300))
    assert listing(tmp_path) == []


def test_server_error_is_retried(server, tmp_path):
    d = downloader(tmp_path)
    path = d.fetch(FileRequest.from_url(PID, f"{server.base}/error500/{PID}.LBL", 9_000 // 1024))
    assert path.read_bytes() == server.files[f"{PID}.LBL"]
    assert len(server.requests) == 2 and d.sleeps == [0.25]


def test_missing_file_is_not_retried(server, tmp_path):
    d = downloader(tmp_path)
    with pytest.raises(DownloadError, match="HTTP 404"):
        d.fetch(FileRequest.from_url(PID, f"{server.base}/files/{PID}.IMG"))
    assert len(server.requests) == 1


def test_redirect_to_another_host_is_refused_unless_allowed(server, tmp_path):
    url = f"{server.base}/redirect/{PID}.LBL"
    with pytest.raises(DownloadError, match="refusing redirect from 127.0.0.1 to http://localhost.*--allow-host"):
        downloader(tmp_path).fetch(FileRequest.from_url(PID, url))
    assert listing(tmp_path) == []
    path = downloader(tmp_path, allowed_hosts=["localhost"]).fetch(FileRequest.from_url(PID, url))
    assert path.read_bytes() == server.files[f"{PID}.LBL"]


@pytest.mark.parametrize(
    "name", ["../../evil.JP2", "..", "a/b.JP2", ".hidden", "x\\y.JP2", "/etc/passwd", "", "ok..JP2"]
)
def test_path_like_names_are_refused(name):
    with pytest.raises(DownloadError, match="refusing file name"):
        safe_file_name(name)


def test_traversal_in_urls_and_ids_is_refused(server, tmp_path):
    with pytest.raises(DownloadError, match="refusing file name '../../evil.JP2'"):
        FileRequest.from_url(PID, f"{server.base}/files/..%2F..%2Fevil.JP2")
    with pytest.raises(DownloadError, match="refusing file name"):
        FileRequest.from_url(PID, f"{server.base}/files/x.JP2", name="../x.JP2")
    with pytest.raises(DownloadError, match="only http"):
        FileRequest.from_url(PID, "file:///etc/passwd")
    with pytest.raises(DownloadError, match="not a HiRISE product id"):
        validate_product_id("../ESP_011319_1390_RED")
    assert validate_product_id(" esp_011319_1390_red ") == PID


def test_cli_search_then_download_from_the_footprints(server, tmp_path):
    template = real_products()[1]
    server.products = [
        southern_product(template, 11319, -49.0, 298.95, 150.0, server.base),
        southern_product(template, 11700, -61.0, 40.0, 150.0, server.base),
    ]
    pid = server.products[0]["pdsid"]
    server.files = {f"{pid}.JP2": file_bytes(f"{pid}.JP2"), f"{pid}.LBL": file_bytes(f"{pid}.LBL", 9_000)}
    gpkg = tmp_path / "fp.gpkg"
    ode = f"{server.base}/many/live2/"
    proc = marsice(
        "search", "--lat", "-60", "-40", "--ls", "140", "200", "--source", "ode", "--ode-url", ode, "-o", str(gpkg)
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{pid}" in proc.stdout and "download 0.00 GB (JP2 + LBL) for 1 products" in proc.stdout
    with sqlite3.connect(gpkg) as db:
        rows = db.execute("SELECT product_id, jp2_kbytes, lbl_kbytes, map_scale FROM footprints").fetchall()
    assert rows == [(pid, 146, 8, 0.25)]

    out = tmp_path / "cache"
    dry = marsice("download", "--from", str(gpkg), "--to", str(out), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 2 files, 0.000 GB; nothing downloaded" in dry.stdout  # (146 + 8) KiB as listed
    assert f"{pid}.JP2: 0.1 MB" in dry.stdout
    assert not out.exists()
    capped = marsice("download", "--from", str(gpkg), "--to", str(out), "--max-gb", "0.0001")
    assert capped.returncode == 5 and "exceeds --max-gb" in capped.stderr
    ok = marsice("download", "--from", str(gpkg), "--to", str(out))
    assert ok.returncode == 0, ok.stderr
    assert (out / f"{pid}.JP2").read_bytes() == server.files[f"{pid}.JP2"]
    assert (out / f"{pid}.LBL").read_bytes() == server.files[f"{pid}.LBL"]
    assert sorted(p.name for p in out.iterdir()) == [".marsice", f"{pid}.JP2", f"{pid}.LBL"]


def test_cli_download_by_id_and_browse_through_ode(server, tmp_path):
    template = real_products()[1]
    server.products = [southern_product(template, 11319, -49.0, 298.95, 150.0, server.base)]
    pid = server.products[0]["pdsid"]
    server.files = {f"{pid}.browse.jpg": file_bytes("browse", 20_000)}
    out = tmp_path / "browse"
    ode = f"{server.base}/byid/live2/"
    proc = marsice("download", pid.lower(), "--browse", "--to", str(out), "--ode-url", ode, "--source", "ode")
    assert proc.returncode == 0, proc.stderr
    assert (out / f"{pid}.BROWSE.JPG").read_bytes() == file_bytes("browse", 20_000)
    bad = marsice("download", "../etc", "--to", str(out), "--source", "bundled", "--dry-run")
    assert bad.returncode == 5 and "not a HiRISE product id" in bad.stderr
