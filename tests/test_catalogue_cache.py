"""The download folder as a cache (catalogue/cache.py): MarsIce evicts or replaces only files it wrote.

A record per file in ``FOLDER/.marsice/`` says what MarsIce wrote; eviction takes MarsIce's own downloads, least
recently used first, reports each one, and leaves the user's files byte-identical; records written by several
processes at once are never lost.

Every server is local (127.0.0.1, see tests/catalogue_http.py).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from marsice_plugin.catalogue.cache import CacheRecords
from marsice_plugin.catalogue.download import FileRequest
from marsice_plugin.errors import DownloadError
from marsice_plugin.scan.tasks import ProductJob, drop_files

from .catalogue_http import LocalServer, downloader, file_bytes, listing, marsice, ode_record, real_products

PID = "ESP_011319_1390_RED"
JP2 = f"{PID}.JP2"


@pytest.fixture
def server():
    with LocalServer() as s:
        s.files = {JP2: file_bytes(JP2), f"{PID}.LBL": file_bytes(f"{PID}.LBL", 9_000)}
        yield s


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


# -- the cache deletes only what MarsIce wrote ------------------------------------------------------
def test_cache_evicts_only_marsices_own_files_least_recently_used_first(server, tmp_path):
    """Eviction deletes MarsIce's downloads, oldest use first, says so, and leaves every other file as it was."""
    server.files.update({"OLD.JP2": b"o" * 100_000, "RECENT.JP2": b"r" * 100_000})
    said: list[str] = []
    d = downloader(tmp_path, log=said.append)
    old, recent = (d.fetch(FileRequest.from_url(PID, f"{server.base}/files/{n}")) for n in ("OLD.JP2", "RECENT.JP2"))
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(recent, (2_000_000, 2_000_000))
    mine = tmp_path / "my_notes.txt"  # the user's, and the oldest file of all
    mine.write_bytes(b"n" * 10_000)
    os.utime(mine, (1, 1))
    d = downloader(tmp_path, max_cache_bytes=270_000, log=said.append)
    d.fetch(FileRequest.from_url(PID, f"{server.base}/files/{PID}.JP2"))
    assert listing(tmp_path) == [".marsice", f"{PID}.JP2", "RECENT.JP2", "my_notes.txt"]
    assert mine.read_bytes() == b"n" * 10_000 and mine.stat().st_mtime == 1
    assert d.cache_bytes() == 260_000
    assert len(said) == 1 and said[0].startswith("cache: evicted OLD.JP2 (0.1 MB, downloaded by MarsIce")
    assert not (tmp_path / ".marsice" / "OLD.JP2.json").exists()
    with pytest.raises(DownloadError, match="does not fit the cache limit"):
        downloader(tmp_path / "small", max_cache_bytes=100_000).fetch(
            FileRequest.from_url(PID, f"{server.base}/files/{PID}.JP2")
        )
    assert listing(tmp_path / "small") == []


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
