"""``marsice scan`` on a real 2-worker LocalCluster, with products served by an HTTP server on 127.0.0.1.

One cluster and one set of generated products serve every test (module fixtures): starting workers and
importing TensorFlow in each costs seconds. A worker is really killed (SIGKILL of its own process, by a
worker plugin, the first time the detect task of one product starts), a client is really killed mid-scan,
and a corrupt JPEG2000 is served for one product.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

import cloudpickle  # noqa: E402

from marsice_plugin.scan.manifest import Manifest, manifest_path  # noqa: E402
from marsice_plugin.scan.plan import JobOptions, first_dtms, make_jobs  # noqa: E402
from marsice_plugin.scan.runner import run_scan  # noqa: E402

from .catalogue_http import LocalServer, real_products  # noqa: E402
from .catalogue_http import ode_record as shared_ode_record  # noqa: E402
from .conftest import DEMO_MODEL, REPO  # noqa: E402

# The worker plugin below is defined here; workers receive it by value, not by importing this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

LAT, LS = -50.0, 170.0
ORBITS = (91010, 91020, 91030, 91040, 91050)  # apart: a DTM pairs orbit N with N + 1
BAD_ORBIT = 91090


def pid_of(orbit: int) -> str:
    return f"ESP_{orbit:06d}_{round(1800 + 10 * LAT):04d}_RED"


def ode_record(template: dict, pid: str, lon: float, base: str, files: dict[str, bytes]) -> dict:
    """ODE's real product shape at ``lon`` (the archive's latitude and Ls) with the files as served."""
    return shared_ode_record(template, pid, LAT, lon, LS, base, files)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Five good tiny products (one with a DTM) and one corrupt one, served as an ODE stand-in + files."""
    from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    src = tmp_path_factory.mktemp("archive")
    template = real_products()[1]
    with LocalServer() as server:
        for i, orbit in enumerate(ORBITS):
            lon = 30.0 + i
            sample = write_sample_product(
                src,
                SceneConfig(width=768, height=768, seed=orbit, n_craters=1, n_boulders=60, n_ice_boulder=3),
                ProductGeometry(center_latitude=LAT, center_longitude=lon, solar_longitude=LS),
                orbit=orbit,
                dtm_factor=4 if i == 0 else None,
            )
            files = {p.name: p.read_bytes() for p in (sample.image_path, sample.label_path)}
            server.files.update(files)
            server.products.append(ode_record(template, sample.product_id, lon, server.base, files))
            if sample.dtm_path is not None:
                dtm = {sample.dtm_path.name: sample.dtm_path.read_bytes()}
                server.files.update(dtm)
                server.products.append(ode_record(template, sample.dtm_path.stem, lon, server.base, dtm))
        bad = pid_of(BAD_ORBIT)
        label = (src / f"{pid_of(ORBITS[1])}.LBL").read_text().replace(pid_of(ORBITS[1]), bad)
        files = {f"{bad}.JP2": b"\x00\x00\x00\x0cjP  \r\n\x87\n" + os.urandom(40_000), f"{bad}.LBL": label.encode()}
        server.files.update(files)
        server.products.append(ode_record(template, bad, 36.0, server.base, files))
        yield server


@pytest.fixture(scope="module")
def cluster():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50,
            env={"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"},
        ) as c,
        distributed.Client(c) as client,
    ):  # fmt: skip
        yield client


def search(server: LocalServer) -> tuple[list, dict]:
    from marsice_plugin.catalogue.dtm import pair_dtms
    from marsice_plugin.catalogue.search import SearchQuery
    from marsice_plugin.catalogue.sources import find_products

    ode = f"{server.base}/many/live2/"
    products, used = find_products(SearchQuery(lat=(-60, -40), ls=(140, 200)), "ode", ode_url=ode)
    assert used == "ode"
    dtms, _ = find_products(SearchQuery(lat=(-60, -40), product_type="DTM", lat_rule="intersect"), "ode", ode_url=ode)
    return products, first_dtms(pair_dtms(products, dtms), dtms)


class KillOnce(distributed.WorkerPlugin):
    """SIGKILLs the worker process the first time the detect task of ``product_id`` starts on it."""

    def __init__(self, product_id: str, marker: str):
        self.product_id, self.marker, self.address = product_id, marker, ""

    def setup(self, worker):
        self.address = worker.address

    def transition(self, key, start, finish, **kwargs):
        name = key if isinstance(key, str) else str(key)
        if finish == "executing" and name.startswith(f"detect-{self.product_id}-"):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, f"{os.getpid()} {self.address}".encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)


def gpkg_counts(path: Path, layer: str) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute(f'SELECT product_id, COUNT(*) FROM "{layer}" GROUP BY product_id').fetchall())


def test_scan_survives_a_killed_worker_and_a_corrupt_product(archive, cluster, tmp_path):
    products, dtms = search(archive)
    ids = sorted(p.product_id for p in products)
    assert ids == sorted([*map(pid_of, ORBITS), pid_of(BAD_ORBIT)])
    assert list(dtms) == [pid_of(ORBITS[0])]
    cache = tmp_path / "cache"
    # threshold 0: every chunk is flagged, so candidates are outlined and the DTM product's get terrain fields
    options = JobOptions(cache_dir=cache, model_path=DEMO_MODEL, threshold=0.0, cache_bytes=10**8)
    jobs = make_jobs(products, options, dtms)
    victim, marker = pid_of(ORBITS[2]), tmp_path / "killed.pid"
    cluster.register_plugin(KillOnce(victim, str(marker)), name="kill-once")
    try:
        out = tmp_path / "scan.gpkg"
        report = run_scan(jobs, out, client=cluster)
    finally:
        cluster.unregister_worker_plugin("kill-once")

    # the worker really died: its pid is gone, and the product still committed (on a worker process)
    killed_pid, killed_address = marker.read_text().split()
    with pytest.raises(ProcessLookupError):
        os.kill(int(killed_pid), 0)
    with Manifest(manifest_path(out)) as m:
        states = {s.product_id: s for s in m.all()}
    assert states[victim].worker != killed_address
    assert states[victim].worker in cluster.scheduler_info()["workers"]
    good = [pid_of(o) for o in ORBITS]
    assert {p: states[p].state for p in good} == dict.fromkeys(good, "committed")
    assert all(states[p].commits == 1 and states[p].attempts == 1 for p in good)
    bad = states[pid_of(BAD_ORBIT)]
    assert bad.state == "failed" and bad.commits == 0 and f"{pid_of(BAD_ORBIT)}.JP2" in bad.error
    # exactly one row per product in 'products', one 768-px chunk per product, nothing of the bad one
    assert gpkg_counts(out, "products") == dict.fromkeys(good, 1)
    assert gpkg_counts(out, "chunks") == dict.fromkeys(good, 1)
    s = report.summary
    assert (s.products, s.committed, s.failed, sum(s.categories.values())) == (6, 5, 1, 5)
    # terrain attributes came with the product that has a DTM, and only with it
    assert report.terrain_applied == 1
    with sqlite3.connect(out) as db:
        rows = db.execute("SELECT product_id, terrain_score FROM ice_candidates").fetchall()
    assert s.categories == {"none": 0, "one": 5, "several": 0} and s.candidates == len(rows) > 0
    assert {pid for pid, _ in rows} > {good[0]}
    assert all((score is not None) == (pid == good[0]) for pid, score in rows)
    # raw files are dropped after each commit; the bad product's stay for inspection
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == [
        f"{pid_of(BAD_ORBIT)}.JP2",
        f"{pid_of(BAD_ORBIT)}.LBL",
    ]
    assert "failed" in s.table() and f"failed {pid_of(BAD_ORBIT)}" in s.table()


def test_interrupted_scan_resumes_without_redoing_committed_products(archive, cluster, tmp_path):
    products, _ = search(archive)
    products = [p for p in products if p.product_id != pid_of(BAD_ORBIT)]
    cache = tmp_path / "cache"
    # files already in the cache before the scan (e.g. from `marsice download`) are reused and kept
    kept = [f"{pid_of(ORBITS[4])}.JP2", f"{pid_of(ORBITS[4])}.LBL"]
    cache.mkdir()
    for name in kept:
        (cache / name).write_bytes(archive.files[name])
    jobs = make_jobs(products, JobOptions(cache_dir=cache, model_path=DEMO_MODEL))
    out = tmp_path / "scan.gpkg"
    requests_before = len(archive.requests)
    first = run_scan(jobs, out, client=cluster, stop_after=2)
    assert first.processed == 2 and first.summary.committed == 2 and first.summary.pending == 3
    with Manifest(manifest_path(out)) as m:
        committed_first = {s.product_id for s in m.all() if s.state == "committed"}
    second = run_scan(jobs, out, client=cluster)
    assert second.skipped == 2 and second.processed == 3
    with Manifest(manifest_path(out)) as m:
        states = {s.product_id: s for s in m.all()}
    assert all(s.state == "committed" and s.commits == 1 for s in states.values())
    assert all(states[p].attempts == 1 for p in committed_first)
    assert gpkg_counts(out, "products") == dict.fromkeys(states, 1)
    assert sorted(p.name for p in cache.iterdir()) == kept
    fetched = {path.rsplit("/", 1)[-1] for path, _, _ in archive.requests[requests_before:]}
    assert fetched == {f"{p.product_id}.{ext}" for p in products[:4] for ext in ("JP2", "LBL")}
    downloaded_first = committed_first - {pid_of(ORBITS[4])}  # its files were in the cache already
    assert first.download_bytes == sum(len(archive.files[f"{p}.{e}"]) for p in downloaded_first for e in ("JP2", "LBL"))


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "marsice_plugin", "--progress", "json", "scan", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, **kw,
    )  # fmt: skip


def _result(proc: subprocess.Popen) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=120)
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    results = [e for e in events if e["type"] == "result"]
    return proc.returncode, (results[-1]["outputs"] if results else {}), err


def test_cli_killed_client_then_resume(archive, cluster, tmp_path):
    out, cache = tmp_path / "scan.gpkg", tmp_path / "cache"
    args = ["--lat", "-60", "-40", "--ls", "140", "200", "--source", "ode", "--ode-url", f"{archive.base}/many/live2/",
            "--cache", str(cache), "--model", str(DEMO_MODEL), "--scheduler", cluster.scheduler.address,
            "-o", str(out)]  # fmt: skip
    proc = _cli(*args)
    deadline = time.monotonic() + 90
    committed: set[str] = set()
    while time.monotonic() < deadline and proc.poll() is None and not committed:
        if manifest_path(out).exists():
            with contextlib.suppress(sqlite3.OperationalError), sqlite3.connect(manifest_path(out)) as db:
                committed = {r[0] for r in db.execute("SELECT product_id FROM products WHERE state = 'committed'")}
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no clean-up of any kind in the client
    proc.wait()
    assert committed, "the first run committed nothing before it was killed"
    code, outputs, err = _result(_cli(*args))
    assert code == 0, err
    assert outputs["OUTPUT"] == str(out) and outputs["products"] == 6
    assert (outputs["committed"], outputs["failed"]) == (5, 1)
    assert outputs["skipped"] >= len(committed)
    print(f"killed the client after {len(committed)} commits; the resumed run skipped {outputs['skipped']}")
    with Manifest(manifest_path(out)) as m:
        states = {s.product_id: s for s in m.all()}
    assert all(states[p].attempts == 1 and states[p].commits == 1 for p in committed)
    assert all(s.commits == 1 for s in states.values() if s.state == "committed")
    assert gpkg_counts(out, "products") == {p: 1 for p, s in states.items() if s.state == "committed"}


def test_cli_dry_run_and_max_gb_write_nothing(archive, tmp_path):
    out, cache = tmp_path / "scan.gpkg", tmp_path / "cache"
    args = ["--lat", "-60", "-40", "--ls", "140", "200", "--source", "ode", "--ode-url", f"{archive.base}/many/live2/",
            "--cache", str(cache), "-o", str(out)]  # fmt: skip
    code, outputs, err = _result(_cli(*args, "--dry-run"))
    assert code == 0, err
    expected = sum(len(data) // 1024 * 1024 for name, data in archive.files.items())
    assert outputs["OUTPUT"] is None and outputs["products"] == 6 and outputs["files"] == 13
    assert outputs["dtms"] == 1 and outputs["download_gb"] == round(expected / 1e9, 3)
    capped = _cli(*args, "--max-gb", "0.000001")
    code, outputs, err = _result(capped)
    assert code == 5 and "more than --max-gb 1e-06" in err and outputs == {}
    assert not out.exists() and not manifest_path(out).exists() and not cache.exists()
