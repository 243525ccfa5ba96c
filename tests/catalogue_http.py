"""Local HTTP servers for the catalogue tests: an ODE REST stand-in and a file server with faults.

Both listen on 127.0.0.1 (ephemeral port) in a thread. The ODE stand-in replays responses in ODE's
real JSON shapes (the recorded ones in tests/data/ode/ and others built from them) and, unlike the
real ODE, *rejects* any query parameter that is not in the ODE REST manual (v2.1.6), so a client that
misspells a filter fails loudly here instead of silently getting unfiltered results. It deliberately
ignores the filters themselves (it returns its whole product list, paged), so the client's local
re-filtering is what the tests observe.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from marsice_plugin.catalogue.download import Downloader

ODE_DIR = Path(__file__).resolve().parent / "data" / "ode"
REPO = Path(__file__).resolve().parents[1]

#: Parameter names of the ODE REST manual v2.1.6 that MarsIce may use (written out here, independently
#: of the client's own list).
MANUAL_PARAMETERS = {
    "query", "target", "ihid", "iid", "pt", "pdsid", "westernlon", "easternlon", "minlat", "maxlat",
    "minsollon", "maxsollon", "mininangle", "maxinangle", "minobtime", "maxobtime", "results", "output",
    "limit", "offset",
}  # fmt: skip


def load_ode(name: str) -> dict[str, Any]:
    return json.loads((ODE_DIR / name).read_text())


def real_products() -> list[dict[str, Any]]:
    """The six real products of the recorded box search (lat 0, lon 0)."""
    return load_ode("ode_rest_hirise_bbox_lat0_lon0_6products.json")["ODEResults"]["Products"]["Product"]


def file_bytes(name: str, size: int = 150_000) -> bytes:
    """Deterministic content for a served file."""
    seed = name.encode()
    out = bytearray()
    i = 0
    while len(out) < size:
        out += bytes((b + i * 31) % 256 for b in seed) + i.to_bytes(4, "little")
        i += 1
    return bytes(out[:size])


def downloader(folder: Path, **kw: Any) -> Downloader:
    """A downloader for the local servers: 8 KiB blocks, a 10 s timeout, and backoffs recorded in ``.sleeps``
    instead of waited for."""
    sleeps: list[float] = []
    d = Downloader(folder, **{"backoff_s": 0.25, "timeout_s": 10, "sleep": sleeps.append, "chunk_bytes": 8192, **kw})
    d.sleeps = sleeps  # type: ignore[attr-defined]
    return d


def listing(folder: Path) -> list[str]:
    """The names in ``folder`` (none when it does not exist): what a download left there."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def marsice(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a child process, as users run it."""
    return subprocess.run(
        [sys.executable, "-m", "marsice_plugin", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def southern_product(template: dict[str, Any], orbit: int, lat: float, lon: float, ls: float, base: str) -> dict:
    """A RED product in ODE's real shape (copied from a real one), moved to lat/lon/Ls, files on ``base``."""
    p = copy.deepcopy(template)
    obs = f"ESP_{orbit:06d}_{round((90 - lat) * 10) % 10000:04d}"
    pid = f"{obs}_RED"
    half_lat, half_lon = 0.25, 0.03
    west, east = lon - half_lon, lon + half_lon
    w180, e180 = ((west + 180) % 360) - 180, ((east + 180) % 360) - 180
    p.update(
        pdsid=pid,
        Observation_id=obs,
        Center_latitude=f"{lat:.3f}",
        Center_longitude=f"{lon:.3f}",
        Minimum_latitude=f"{lat - half_lat:.3f}",
        Maximum_latitude=f"{lat + half_lat:.3f}",
        Westernmost_longitude=f"{west % 360:.3f}",
        Easternmost_longitude=f"{east % 360:.3f}",
        Solar_longitude=f"{ls}",
        Map_scale="0.25",
        Footprint_C0_geometry=(
            f"POLYGON (({e180:.3f} {lat - half_lat:.3f}, {w180:.3f} {lat - half_lat:.3f}, "
            f"{w180:.3f} {lat + half_lat:.3f}, {e180:.3f} {lat + half_lat:.3f}, {e180:.3f} {lat - half_lat:.3f}))"
        ),
        Footprints_cross_meridian="False",
    )
    sizes = {f"{pid}.JP2": 150_000, f"{pid}.LBL": 9_000, f"{pid}.BROWSE.JPG": 20_000}
    p["Product_files"] = {
        "Product_file": [
            {"Description": "PRODUCT DATA FILE", "FileName": f"{pid}.JP2", "KBytes": str(sizes[f"{pid}.JP2"] // 1024),
             "Type": "Product", "URL": f"{base}/files/{pid}.JP2"},
            {"Description": "PRODUCT LABEL FILE", "FileName": f"{pid}.LBL", "KBytes": str(sizes[f"{pid}.LBL"] // 1024),
             "Type": "Product", "URL": f"{base}/files/{pid}.LBL"},
            {"Description": "BROWSE", "FileName": f"{pid}.BROWSE.JPG",
             "KBytes": str(sizes[f"{pid}.BROWSE.JPG"] // 1024), "Type": "Browse",
             "URL": f"{base}/files/{pid}.browse.jpg"},
        ]
    }  # fmt: skip
    return p


def ode_record(template: dict[str, Any], pid: str, lat: float, lon: float, ls: float, base: str,
               files: dict[str, bytes]) -> dict[str, Any]:  # fmt: skip
    """ODE's real product shape for ``pid`` at lat/lon/Ls with ``files`` as served (names, sizes, URLs)."""
    orbit = int(pid.split("_")[1])
    rec = southern_product(template, orbit, lat, lon, ls, base)
    rec.update(pdsid=pid, Observation_id=pid.rsplit("_", 1)[0] if pid.endswith("_RED") else pid)
    rec["Product_files"] = {
        "Product_file": [
            {"Description": "PRODUCT DATA FILE", "FileName": name, "KBytes": str(len(data) // 1024),
             "Type": "Product", "URL": f"{base}/files/{name}"}
            for name, data in files.items()
        ]
    }  # fmt: skip
    return copy.deepcopy(rec)


def ode_envelope(products: list[dict[str, Any]] | str, params: dict[str, str]) -> dict[str, Any]:
    """An ODEResults answer in the real shape: a dict for one product, a list for several."""
    if isinstance(products, str):
        body: Any = products
    else:
        body = {"Product": products[0] if len(products) == 1 else products}
    return {
        "ODEResults": {
            "Count": str(len(products)) if not isinstance(products, str) else "0",
            "Products": body,
            "QuerySummary": {**params, "Date": "2020-09-14T08:26:21.003", "Query_Elapsed_Time": "00:00:00.25"},
            "Status": "Success",
        }
    }


class LocalServer:
    """ThreadingHTTPServer on 127.0.0.1 with an ephemeral port, recording every request."""

    def __init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self, head=False)

            def do_HEAD(self) -> None:
                server.handle(self, head=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.rejected: list[str] = []
        self.products: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.counters: dict[str, int] = {}
        self.slow_s = 3.0
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- helpers --------------------------------------------------------------------------------
    def count(self, key: str) -> int:
        self.counters[key] = self.counters.get(key, 0) + 1
        return self.counters[key]

    @staticmethod
    def send(h: BaseHTTPRequestHandler, code: int, body: bytes, headers: dict[str, str] | None = None,
             head: bool = False, length: int | None = None) -> None:  # fmt: skip
        h.send_response(code)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        if not head:
            try:
                h.wfile.write(body)
                h.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (the slow scenario)
                h.close_connection = True

    @staticmethod
    def send_and_close(
        h: BaseHTTPRequestHandler, body: bytes, announced: int, headers: dict[str, str] | None = None
    ) -> None:
        """A 200 answer announcing ``announced`` bytes that sends ``body`` and closes the connection, whatever the
        difference: a dropped connection (fewer), a server that lies about the size (more or fewer)."""
        h.send_response(200)
        h.send_header("Content-Length", str(announced))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        h.close_connection = True

    def handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        url = urllib.parse.urlsplit(h.path)
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        self.requests.append((url.path, params, dict(h.headers)))
        parts = url.path.strip("/").split("/")
        if len(parts) >= 2 and parts[1] == "live2":
            return self.ode(h, parts[0], params)
        if len(parts) == 2:
            return self.serve_file(h, parts[0], urllib.parse.unquote(parts[1]), head)
        self.send(h, 404, b"not found")

    # -- ODE ------------------------------------------------------------------------------------
    def ode(self, h: BaseHTTPRequestHandler, scenario: str, params: dict[str, str]) -> None:
        unknown = set(params) - MANUAL_PARAMETERS
        if unknown:
            self.rejected.append(",".join(sorted(unknown)))
            return self.send(h, 400, f"unknown parameters {sorted(unknown)}".encode())
        if params.get("output") != "JSON" or params.get("query") != "product":
            return self.send(h, 400, b"query=product&output=JSON expected")
        js = {"Content-Type": "application/json"}
        if scenario == "one":
            return self.send(
                h, 200, (ODE_DIR / "ode_rest_hirise_productid_ESP_016430_2095_COLOR.json").read_bytes(), js
            )
        if scenario == "error":
            return self.send(h, 200, (ODE_DIR / "ode_rest_error_missing_params.json").read_bytes(), js)
        if scenario == "none":
            return self.send(h, 200, json.dumps(ode_envelope("No Products Found", params)).encode(), js)
        if scenario == "fail500":
            return self.send(h, 500, b"<html><body>Internal Server Error</body></html>")
        if scenario == "flaky" and self.count("flaky") <= 2:
            return self.send(h, 503, b"busy")
        if scenario == "malformed":
            return self.send(h, 200, b'{"ODEResults": {"Products": {"Product": [{"pdsid": "ESP_0', js)
        if scenario == "slow":
            time.sleep(self.slow_s)
        if scenario in ("redirect", "redirect_here"):  # to another host name of this machine, or to this one
            host = "localhost" if scenario == "redirect" else "127.0.0.1"
            target = f"http://{host}:{self.port}/many/live2/?{urllib.parse.urlencode(params)}"
            return self.send(h, 302, b"", {"Location": target})
        if scenario == "byid":
            found = [p for p in self.products if p["pdsid"] == params.get("pdsid", "").upper()]
            return self.send(h, 200, json.dumps(ode_envelope(found or "No Products Found", params)).encode(), js)
        limit, offset = int(params.get("limit", 100)), int(params.get("offset", 0))
        page = self.products[offset : offset + limit]
        return self.send(h, 200, json.dumps(ode_envelope(page or "No Products Found", params)).encode(), js)

    # -- files ----------------------------------------------------------------------------------
    @staticmethod
    def etag(data: bytes) -> str:
        """A strong ETag for one version of a file (its content hash, as many servers derive it)."""
        return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'

    def validators(self, data: bytes, scenario: str) -> dict[str, str]:
        """ETag and Last-Modified of a served file; none under ``/novalidator/`` (the download must not resume)."""
        if scenario == "novalidator":
            return {}
        return {"ETag": self.etag(data), "Last-Modified": "Tue, 15 Sep 2020 08:00:00 GMT"}

    def serve_file(self, h: BaseHTTPRequestHandler, scenario: str, name: str, head: bool) -> None:
        data = self.files.get(name)
        if data is None:
            return self.send(h, 404, b"no such file")
        start = 0
        rng = h.headers.get("Range")
        if_range = h.headers.get("If-Range")
        current = self.validators(data, scenario)
        if if_range is not None and if_range not in current.values():
            rng = None  # RFC 9110 If-Range: the file changed since, so the whole new version (200)
        if rng and rng.startswith("bytes=") and scenario != "norange":
            start = int(rng[6:].split("-")[0])
        if scenario == "redirect":
            return self.send(h, 302, b"", {"Location": f"http://localhost:{self.port}/files/{name}"}, head)
        if scenario == "error500" and self.count("error500:" + name) <= 1:
            return self.send(h, 500, b"oops")
        if scenario in ("drop", "novalidator") and self.count("drop:" + name) == 1 and not head:
            # Announce the whole file, send 40 % of it, then close the connection.
            return self.send_and_close(h, data[: len(data) * 2 // 5], len(data), current)
        if scenario == "liar" and not head:
            # Always announces more than it has, then closes: the size can never be satisfied.
            return self.send_and_close(h, data, len(data) + 5000, current)
        if start:
            body = data[start:]
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}", **current}
            return self.send(h, 206, body, headers, head)
        return self.send(h, 200, data, {"Content-Type": "application/octet-stream", **current}, head)
