"""Scan throughput on a LocalCluster: products/hour with 1 and with 2 single-threaded workers.

Not a test: it times things. The same generated products (real format: 10-bit lossless JP2 + PDS3 label)
are served over HTTP from 127.0.0.1 and scanned twice, each time into a new GeoPackage with an empty
cache, so both runs download, decode, score, delineate and commit the same work. Every worker runs one
thread and its thread pools are pinned to one thread (OMP/MKL/OpenBLAS and TensorFlow intra-op = 1,
inter-op = 1), so the ratio measures how the scan spreads over processes, not over threads.

Cluster start-up and each worker's first model load (the TensorFlow import) are timed apart from the
scan itself: a long scan pays them once. It prints products/hour for each worker count, their ratio,
the peak RSS of each worker process and how long each was busy; the load average before each run
says how much of the machine other processes took (on a shared 2-core machine that, not the scan,
can bound the ratio).

Usage::

    .venv/bin/python bench/scan.py [--products 8] [--size 2048] [--model models/X.keras] [--overlap auto|0]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def generate(folder: Path, n: int, size: int) -> list[str]:
    from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    ids = []
    for i in range(n):
        sample = write_sample_product(
            folder,
            SceneConfig(width=size, height=size, seed=100 + i),
            ProductGeometry(center_latitude=-50.0, center_longitude=20.0 + i, solar_longitude=170.0),
            orbit=92000 + 10 * i,
        )
        ids.append(sample.product_id)
    return ids


def jobs_for(ids: list[str], folder: Path, base: str, cache: Path, model: Path, overlap: int | None) -> list:
    from marsice_plugin.catalogue.download import FileRequest
    from marsice_plugin.scan.tasks import ProductJob

    jobs = []
    for pid in ids:
        files = tuple(
            FileRequest.from_url(pid, f"{base}/{pid}{ext}", (folder / f"{pid}{ext}").stat().st_size // 1024)
            for ext in (".JP2", ".LBL")
        )
        jobs.append(ProductJob(pid, files, str(cache), str(model), overlap=overlap, threads=1))
    return jobs


def run_once(
    workers: int, ids: list[str], folder: Path, base: str, model: Path, work: Path, overlap: int | None
) -> dict:
    from distributed import Client, LocalCluster

    from marsice_plugin.scan.runner import THREAD_VARIABLES, run_scan
    from marsice_plugin.scan.tasks import warm_up

    env = dict.fromkeys(THREAD_VARIABLES, "1") | {"TF_NUM_INTEROP_THREADS": "1"}
    load = os.getloadavg()[0]  # other processes competing for the same cores skew the ratio
    t0 = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40, env=env
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(warm_up, str(model), 1)  # TensorFlow import + model load on every worker
        startup = time.perf_counter() - t0
        cache, out = work / f"cache{workers}", work / f"scan{workers}.gpkg"
        t1 = time.perf_counter()
        report = run_scan(jobs_for(ids, folder, base, cache, model, overlap), out, client=client)
        scan = time.perf_counter() - t1
    assert report.summary.committed == len(ids), report.summary.table()
    return {"load": load, "startup": startup, "scan": scan, "workers": report.workers, "chunks": report.summary.chunks}


def main() -> int:
    from marsice_plugin.commands.arguments import overlap_arg
    from marsice_plugin.model_registry import default_model_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048, help="product width and height in pixels")
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--overlap", default="auto", help="chunk overlap as 'marsice scan --overlap' takes it")
    args = parser.parse_args()
    overlap = overlap_arg(args.overlap)

    with tempfile.TemporaryDirectory(prefix="marsice-bench-scan-") as tmp:
        work = Path(tmp)
        folder = work / "archive"
        t = time.perf_counter()
        ids = generate(folder, args.products, args.size)
        print(f"generated {len(ids)} products of {args.size} x {args.size} px in {time.perf_counter() - t:.1f} s")
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        print(f"CPUs visible: {os.cpu_count()}; workers single-threaded, thread pools pinned to 1 "
              "(OMP/MKL/OpenBLAS_NUM_THREADS=1, TF intra-op=1, inter-op=1)")  # fmt: skip
        results = {}
        for workers in (1, 2):
            r = run_once(workers, ids, folder, base, args.model, work, overlap)
            results[workers] = r
            rate = 3600 * len(ids) / r["scan"]
            print(f"{workers} worker(s): start-up + model load {r['startup']:.1f} s; scan {r['scan']:.1f} s for "
                  f"{len(ids)} products ({r['chunks']} chunks) = {rate:.0f} products/hour")  # fmt: skip
            print(f"    load average before the run: {r['load']:.2f} on {os.cpu_count()} CPUs")
            for address, stats in sorted(r["workers"].items()):
                print(f"    worker {address}: {stats.products} products, busy {stats.seconds:.1f} s of the "
                      f"{r['scan']:.1f} s scan, peak RSS {stats.max_rss_bytes / 2**20:.0f} MiB")  # fmt: skip
        httpd.shutdown()
    ratio = results[1]["scan"] / results[2]["scan"]
    print(f"speed-up 2 workers vs 1: {ratio:.2f}x (ideal 2.00x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
