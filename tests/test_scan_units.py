"""Scan building blocks without a cluster: manifest states, summary table, cache protection, pull plan."""

from __future__ import annotations

import os

import pytest

from marsice_plugin.catalogue.cache import CacheRecords
from marsice_plugin.catalogue.download import FileRequest
from marsice_plugin.errors import DownloadError
from marsice_plugin.scan.manifest import Manifest, manifest_path
from marsice_plugin.scan.plan import check_max_gb, pull_plan
from marsice_plugin.scan.summary import ScanSummary
from marsice_plugin.scan.tasks import ProductJob, ScanDownloader, drop_files

A, B, C = "ESP_000010_1300_RED", "ESP_000020_1300_RED", "ESP_000030_1300_RED"


def job(pid: str, cache, kbytes: int | None = 1) -> ProductJob:
    files = tuple(FileRequest.from_url(pid, f"http://127.0.0.1:9/{pid}{ext}", kbytes) for ext in (".JP2", ".LBL"))
    return ProductJob(pid, files, str(cache), "model.keras")


def test_manifest_states_survive_reopening_and_resume_skips_committed(tmp_path):
    out = tmp_path / "scan.gpkg"
    assert manifest_path(out) == tmp_path / "scan.manifest.sqlite"
    with Manifest(manifest_path(out)) as m:
        assert m.plan([A, B, C, A]) == [A, B, C]
        m.submitted(A)
        m.detected(A, "tcp://w1", 2048)
        m.committed(A, "one", 4, 1, 3)
        m.submitted(B)
        m.failed(B, "B.JP2: GDAL cannot open it", "tcp://w2")
        m.submitted(C)  # the client dies here
    with Manifest(manifest_path(out)) as m:
        assert m.plan([A, B, C]) == [B, C]
        m.submitted(B)
        a, b, c = m.get(A), m.get(B), m.get(C)
        summary = ScanSummary.from_states(m.all())
    assert (a.state, a.commits, a.attempts, a.download_bytes, a.worker) == ("committed", 1, 1, 2048, "tcp://w1")
    assert (b.state, b.attempts, b.error) == ("downloading", 2, None)
    assert (c.state, c.attempts) == ("downloading", 1)
    assert (summary.products, summary.committed, summary.pending, summary.candidates) == (3, 1, 2, 3)
    assert summary.categories == {"none": 0, "one": 1, "several": 0}
    assert summary.table().splitlines()[-1].split() == [
        "not",
        "finished",
        "(resume",
        "with",
        "the",
        "same",
        "command)",
        "2",
    ]


def test_summary_table_lists_failures(tmp_path):
    with Manifest(tmp_path / "m.sqlite") as m:
        m.plan([A, B, C])
        m.committed(A, "several", 6, 3, 5)
        m.committed(C, "none", 6, 0, 0)
        m.failed(B, "download failed: HTTP 404")
        s = ScanSummary.from_states(m.all())
    table = s.table()
    assert (s.committed, s.failed, s.chunks, s.chunks_above, s.candidates) == (2, 1, 12, 3, 5)
    assert s.categories == {"none": 1, "one": 0, "several": 1}
    assert f"failed {B}: download failed: HTTP 404" in table
    assert table.splitlines()[4].split()[-1] == "1"  # category several


def test_eviction_spares_products_in_use_and_drop_removes_only_fetched_files(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for pid, age in ((A, 1_000), (B, 2_000)):
        for ext in (".JP2", ".LBL"):
            path = cache / f"{pid}{ext}"
            path.write_bytes(b"x" * 1000)
            CacheRecords(cache).add(path, f"http://127.0.0.1:9/{path.name}", None)  # as if MarsIce downloaded it
            os.utime(path, (age, age))
    (cache / f".{A}.JP2.partial").write_bytes(b"p" * 500)
    (cache / f".{A}.inflight").write_text("123")  # A is being worked on: its files are not evicted
    d = ScanDownloader(cache, max_cache_bytes=4100)
    evicted = d.make_room(1500)
    assert sorted(p.name for p in evicted) == [f"{B}.JP2", f"{B}.LBL"]
    with pytest.raises(DownloadError, match="cannot hold this run's files"):
        d.make_room(3000)
    freed = drop_files(job(A, cache), [f"{A}.JP2"])
    assert freed == 1000
    assert sorted(p.name for p in cache.iterdir()) == [f".{A}.JP2.partial", ".marsice", f"{A}.LBL"]


def test_pull_plan_counts_listed_sizes_and_skips_cached_files(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{A}.JP2").write_bytes(b"x" * 2048)
    plan = pull_plan([job(A, cache, 2), job(B, cache, 1000)], cache, probe=False)
    assert plan.cached_files == 1 and [r.name for r, _ in plan.files] == [f"{A}.LBL", f"{B}.JP2", f"{B}.LBL"]
    assert plan.known_bytes == (2 + 1000 + 1000) * 1024
    assert plan.text() == "2 products, 3 files, 0.002 GB (1 files already in the cache)"
    check_max_gb(plan, 0.01)
    with pytest.raises(DownloadError, match=r"more than --max-gb 0.001; narrow the search"):
        check_max_gb(plan, 0.001)


def test_a_cancelled_scan_says_what_it_kept(monkeypatch, capsys):
    """A cancel ends a scan with exit 130 and a message that committed products stay (unlike other commands)."""
    from marsice_plugin import cli
    from marsice_plugin.commands import scan

    def interrupted(args, reporter):
        raise KeyboardInterrupt

    monkeypatch.setattr(scan, "run", interrupted)
    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)  # keep pytest's own SIGTERM handling
    assert cli.main(["scan", "--lat", "-60", "-40", "--ls", "140", "200", "-o", "x.gpkg"]) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        "marsice: error: cancelled by the user; products committed before the cancel stay in the results "
        "GeoPackage and its manifest; run the same command again to resume"
    )


def test_scan_workers_chunk_with_the_overlap_the_job_carries(tmp_path):
    """A scan scores chunks as detect does: the tiling overlap by default, the paper's tiling with overlap 0."""
    from marsice_plugin.scan.tasks import ProductOutcome, _detect_into
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    from .conftest import DEMO_MODEL

    sample = write_sample_product(tmp_path / "p", SceneConfig(width=2048, height=1024, seed=5, n_boulders=100))
    counts = {}
    for overlap in (None, 0):
        job = ProductJob(sample.product_id, (), str(tmp_path), str(DEMO_MODEL), overlap=overlap)
        outcome = ProductOutcome(sample.product_id, ok=True)
        _detect_into(outcome, job, sample.label_path)
        counts[overlap] = outcome.chunks
    # 0.5 m/px: the default overlap is 64 px, so 2048 px need 1 + ceil(1024 / 960) = 3 chunks across, the paper's 2
    assert counts == {None: 3, 0: 2}


def test_plan_scan_searches_and_leaves_out_what_an_earlier_run_committed(tmp_path):
    """The scan's plan without the CLI: the band's first products from the bundled catalogue, no DTM pairing (it
    says why), the card's threshold in every job, and the products the manifest lists as committed not pulled."""
    import io
    import json

    from marsice_plugin.errors import OutputError
    from marsice_plugin.model_registry import card_threshold
    from marsice_plugin.progress import Reporter
    from marsice_plugin.scan.plan import ScanOptions, plan_scan

    from .conftest import DEMO_MODEL

    out = tmp_path / "scan.gpkg"
    options = ScanOptions(
        lat=(-60, -40), ls=(140, 200), output=out, cache=tmp_path / "cache", source="bundled", limit=3, model=DEMO_MODEL
    )
    ids = [j.product_id for j in plan_scan(options, Reporter("quiet")).jobs]
    assert len(ids) == 3 and ids == sorted(ids)
    with Manifest(manifest_path(out)) as m:
        m.plan(ids)
        m.submitted(ids[0])
        m.committed(ids[0], "none", 4, 0, 0)
    stream = io.StringIO()
    plan = plan_scan(options, Reporter("json", stdout=stream))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [j.product_id for j in plan.jobs] == ids and [j.product_id for j in plan.pending] == ids[1:]
    assert (plan.committed, plan.source, plan.model) == (1, "bundled", DEMO_MODEL.resolve())
    assert {j.threshold for j in plan.jobs} == {card_threshold(DEMO_MODEL)} and not any(j.dtm for j in plan.jobs)
    assert [(e["type"], e.get("level"), e.get("message")) for e in events] == [
        ("progress", None, "searching (bundled)"),
        ("log", "warning", "no DTMs paired: the DTM list comes from ODE (the bundled catalogue has none)"),
        (
            "log",
            "info",
            "3 products from the bundled catalogue, 1 already committed; to pull: 2 products, 4 files, 0.739 GB "
            "(0.739 GB of it estimated from image sizes, 4 files)",  # the bundled catalogue's estimates
        ),
    ]
    assert not out.exists() and not (tmp_path / "cache").exists()  # planning writes nothing
    with pytest.raises(OutputError, match=r"scan\.shp: scan results are written as a GeoPackage"):
        plan_scan(ScanOptions(lat=(-60, -40), ls=(140, 200), output=tmp_path / "scan.shp", cache=tmp_path), Reporter())
