"""``marsice download``: fetch HiRISE products into a size-limited cache folder, with resume."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..progress import Reporter
from .arguments import add_size_cap_args

CACHE_VARIABLE = "MARSICE_CACHE"


def default_folder() -> Path:
    """$MARSICE_CACHE, else ~/.cache/marsice/hirise."""
    env = os.environ.get(CACHE_VARIABLE)
    return Path(env) if env else Path.home() / ".cache" / "marsice" / "hirise"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "download",
        help="fetch products (JP2 + LBL) into a size-limited cache folder, resuming broken downloads",
        description="Download HiRISE products by id or from a footprint GeoPackage written by `marsice search`. "
        "Files are checked against the listed size and renamed into place only when complete.",
    )
    p.add_argument("products", nargs="*", metavar="PRODUCT_ID", help="product ids, e.g. ESP_016430_2095_RED")
    p.add_argument(
        "--from", dest="from_gpkg", type=Path, metavar="GPKG", help="footprints GeoPackage (layer footprints)"
    )
    p.add_argument("--to", type=Path, default=None, help=f"target/cache folder (default ${CACHE_VARIABLE} or ~/.cache)")
    p.add_argument(
        "--cache-gb",
        type=float,
        default=50.0,
        help="folder size limit: MarsIce's own least recently used downloads are evicted (each one reported); "
        "other files in the folder are never touched",
    )
    add_size_cap_args(p, "the run")
    p.add_argument("--dry-run", action="store_true", help="list the files and sizes, download nothing")
    p.add_argument("--browse", action="store_true", help="fetch the browse JPEGs ODE lists instead of the JP2s")
    p.add_argument("--allow-host", action="append", default=[], metavar="HOST", help="allow redirects to HOST")
    p.add_argument(
        "--source", choices=("auto", "ode", "bundled"), default="auto", help="where product ids are looked up"
    )
    p.add_argument("--ode-url", help="ODE REST base URL (default: $MARSICE_ODE_URL or the public ODE)")
    p.add_argument("--retries", type=int, default=4, help="retries per file on server errors and dropped connections")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds without data, or averaging under 1 KiB/s, before a try is abandoned",
    )


def _requests_for_ids(args: argparse.Namespace, ids: list[str], reporter: Reporter) -> list:
    from ..catalogue.download import FileRequest, validate_product_id
    from ..catalogue.index import rdr_urls
    from ..catalogue.ode import ODEClient, ode_base_url
    from ..errors import DownloadError, ODEError

    out = []
    client = None
    if args.source in ("auto", "ode") or args.browse:
        client = ODEClient(
            ode_base_url(args.ode_url), timeout_s=args.timeout, retries=1 if args.source == "auto" else 3
        )
    for raw in ids:
        pid = validate_product_id(raw)
        product = None
        if client is not None:
            try:
                product = client.product(pid)
            except ODEError as exc:
                if args.source == "ode" or args.browse:
                    raise
                reporter.log(f"{exc}; using the archive's URL layout for {pid} (no listed size)", "warning")
                client = None
        if product is None:
            jp2, lbl = rdr_urls(pid)
            out += [FileRequest.from_url(pid, jp2), FileRequest.from_url(pid, lbl)]
            continue
        wanted = (
            [f for f in product.files if f.kind == "Browse" and f.name.upper() == f"{pid}.BROWSE.JPG"]
            if args.browse
            else [f for f in product.files if f.url in (product.jp2_url, product.lbl_url)]
        )
        if not wanted:
            raise DownloadError(f"ODE lists no {'browse' if args.browse else 'image/label'} files for {pid}")
        out += [FileRequest.from_url(pid, f.url, f.kbytes, name=f.name) for f in wanted]
    return out


def _plan(args: argparse.Namespace, reporter: Reporter) -> list:
    from ..catalogue.download import FileRequest
    from ..catalogue.footprints import read_footprints
    from ..errors import DownloadError

    if not args.products and not args.from_gpkg:
        raise DownloadError("give product ids or --from footprints.gpkg (written by `marsice search -o`)")
    requests = []
    if args.from_gpkg:
        rows = read_footprints(args.from_gpkg)
        if args.browse:
            requests += _requests_for_ids(args, [r.product_id for r in rows], reporter)
        for row in [] if args.browse else rows:
            for url, kb in ((row.jp2_url, row.jp2_kbytes), (row.lbl_url, row.lbl_kbytes)):
                if url:
                    requests.append(FileRequest.from_url(row.product_id, url, kb))
    requests += _requests_for_ids(args, list(args.products), reporter)
    unique = {r.name: r for r in requests}
    return list(unique.values())


def _estimates(args: argparse.Namespace) -> dict[str, int]:
    """Estimated sizes (bytes) by file name, of footprint rows marked ``size_estimated`` (never listed sizes)."""
    from ..catalogue.footprints import read_footprints
    from ..catalogue.size_estimate import LABEL_BYTES

    if not args.from_gpkg or args.browse:
        return {}
    out = {}
    for row in read_footprints(args.from_gpkg):
        if row.estimated_bytes is not None and row.jp2_url and row.lbl_url:
            out[row.jp2_url.rsplit("/", 1)[-1]] = row.estimated_bytes - LABEL_BYTES
            out[row.lbl_url.rsplit("/", 1)[-1]] = LABEL_BYTES
    return out


def _mark(name: str, estimated: dict[str, int]) -> str:
    return "~" if name in estimated else ""


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..catalogue.download import Downloader
    from ..errors import DownloadError

    folder = args.to or default_folder()
    downloader = Downloader(
        folder,
        max_cache_bytes=int(args.cache_gb * 1e9),
        allowed_hosts=args.allow_host,
        retries=args.retries,
        timeout_s=args.timeout,
        log=lambda message: reporter.log(message, "warning"),  # an eviction deletes a file: always say so
    )
    requests = _plan(args, reporter)
    sizes: dict[str, int | None] = {}
    for r in requests:
        cached = folder / r.name
        if r.kbytes is not None:
            sizes[r.name] = r.kbytes * 1024
        elif cached.exists():
            sizes[r.name] = cached.stat().st_size
        else:
            sizes[r.name] = None
    estimated: dict[str, int] = {}
    if args.dry_run or args.max_gb is not None:  # HEAD requests, several at a time (see probe_sizes)
        probed = downloader.probe_sizes([r.url for r in requests if sizes[r.name] is None])
        sizes.update({r.name: probed[r.url] for r in requests if sizes[r.name] is None})
        # last, a footprint row's estimate from the image size (bundled catalogue): counted, and said to be one
        estimates = _estimates(args)
        estimated = {n: estimates[n] for n, s in sizes.items() if s is None and n in estimates}
        sizes.update(estimated)
    known = sum(s for s in sizes.values() if s)
    unknown = [n for n, s in sizes.items() if s is None]
    listing = [
        f"{r.name}: {'?' if sizes[r.name] is None else f'{_mark(r.name, estimated)}{sizes[r.name] / 1e6:.1f} MB'}  "
        f"{r.url}"
        for r in requests
    ]
    total_text = f"{len(requests)} files, {known / 1e9:.3f} GB"
    if estimated:
        guessed = sum(estimated.values()) / 1e9
        total_text += f" ({guessed:.3f} GB of it estimated from image sizes, {len(estimated)} files)"
    if unknown:
        total_text += f" + {len(unknown)} files of unknown size (not counted)"
    if args.max_gb is not None and known > args.max_gb * 1e9:
        raise DownloadError(f"{total_text} exceeds --max-gb {args.max_gb:g}; download fewer products or raise it")
    if args.max_gb is not None and unknown and not args.allow_unknown_size:
        raise DownloadError(
            f"{total_text}, so the run could exceed --max-gb {args.max_gb:g} ({unknown[0]}, for one, has no size "
            "in the listing and none announced by its server); download from a footprints file of `marsice search "
            "--source ode` (it lists sizes), or pass --allow-unknown-size to start anyway"
        )
    if args.dry_run:  # the listing is the answer: it goes to stdout with the total
        reporter.result({"files": len(requests), "gb": round(known / 1e9, 3), "unknown_sizes": len(unknown),
                         "estimated_gb": round(sum(estimated.values()) / 1e9, 3)},
                        "\n".join([*listing, f"dry run: {total_text}; nothing downloaded"]))  # fmt: skip
        return
    for line in listing:
        reporter.log(line)

    done_before = 0

    def progress(name: str, done: int, total: int | None) -> None:
        if known:
            reporter.progress(
                100.0 * (done_before + done) / max(known, 1),
                f"{name}: {done / 1e6:.1f} MB",
                done=done_before + done,
                total=known,
                unit="B",
            )

    downloader.progress = progress
    paths = []
    for i, r in enumerate(requests):
        if known:
            reporter.progress(100 * done_before / known, f"fetching {r.name}", done=done_before, total=known, unit="B")
        else:
            reporter.progress(100 * i / len(requests), f"fetching {r.name}", done=i, total=len(requests), unit="files")
        path = downloader.fetch(r)
        paths.append(path)
        done_before += path.stat().st_size
    reporter.progress(100, "done")
    reporter.result(
        {"FOLDER": str(folder), "files": len(paths), "bytes": done_before},
        f"{len(paths)} files ({done_before / 1e9:.3f} GB) in {folder}",
    )
