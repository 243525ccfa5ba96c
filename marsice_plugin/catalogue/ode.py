"""Client for the PDS Orbital Data Explorer (ODE) REST API, product search only.

Facts from the ODE REST manual (v2.1.6) this client relies on: the base is ``.../live2/`` with
``query=product``; HiRISE RDRs are ``target=mars&ihid=MRO&iid=HIRISE&pt=RDRV11`` and DTMs have their
own product type; a box needs all four of ``westernlon/easternlon/minlat/maxlat`` (longitudes 0-360
east) or it is ignored; ``minsollon/maxsollon``, ``mininangle/maxinangle`` and
``minobtime/maxobtime`` filter by Ls, incidence and time; ``results=opmf``, ``output=JSON``,
``limit`` (default 100) and ``offset`` page the answer.

Why so defensive: ``ODEResults.Products.Product`` is a dict for one hit and a list for several,
``Products`` is the string "No Products Found" when nothing matches, errors come back as
``Status: ERROR`` with HTTP 200, and unknown parameter names are silently ignored. So the client
only ever sends :data:`ODE_PARAMETERS`, normalises both shapes, turns every failure into a
:class:`~marsice_plugin.errors.ODEError` that says what to do, retries 5xx answers and timeouts with
exponential backoff, and re-applies every filter of the query locally on what comes back.

A response body is read in blocks up to a byte limit (:data:`DEFAULT_MAX_RESPONSE_MB`, 64 MiB, or
``MARSICE_ODE_MAX_MB``): a page of 100 products with their file lists is well under 1 MB, so anything
near the limit is a misbehaving server or proxy, and reading it whole could exhaust the memory of the
process (and of QGIS's machine). Past the limit the client stops reading and asks for a narrower search.

Every request goes through the safeguards of :mod:`.http`, as downloads do. A redirect to another host is
refused rather than followed: the answer decides which URLs are downloaded next, so a redirected query would
hand that choice to another server. ``timeout_s`` bounds each read and, in total, the wait for an answer's
headers, and an answer's body must keep up :data:`~.http.MIN_RATE_BYTES_S` over every ``timeout_s`` window:
a server trickling a byte at a time would otherwise hold a search open indefinitely. A body shorter than its
``Content-Length`` is a cut connection (``IncompleteRead``), retried like a reset.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPException, IncompleteRead
from typing import Any

from ..errors import ODEError
from .http import GuardedBody, StalledTransferError, announced_length, open_url, safe_opener
from .mars_time import mars_year, mars_year_start
from .records import CatalogueProduct, ProductFile, observation_of, product_type_of
from .search import SearchQuery

#: The public ODE REST endpoint; override with ``--ode-url`` or ``MARSICE_ODE_URL``.
DEFAULT_ODE_URL = "https://oderest.rsl.wustl.edu/live2/"
ODE_URL_VARIABLE = "MARSICE_ODE_URL"

#: Most bytes read from one ODE response (MiB); override with ``MARSICE_ODE_MAX_MB``.
DEFAULT_MAX_RESPONSE_MB = 64
ODE_MAX_MB_VARIABLE = "MARSICE_ODE_MAX_MB"

#: Bytes read from the socket at a time.
_READ_BLOCK = 1 << 20

#: The only parameter names this client sends (all documented in the ODE REST manual v2.1.6).
ODE_PARAMETERS = frozenset(
    {
        "query",
        "target",
        "ihid",
        "iid",
        "pt",
        "pdsid",
        "westernlon",
        "easternlon",
        "minlat",
        "maxlat",
        "minsollon",
        "maxsollon",
        "mininangle",
        "maxinangle",
        "minobtime",
        "maxobtime",
        "results",
        "output",
        "limit",
        "offset",
    }
)

#: ODE product types: map-projected RDRs (RED and COLOR) and HiRISE DTMs.
PRODUCT_TYPE_RDR = "RDRV11"
PRODUCT_TYPE_DTM = "DTM"

_ODE_TIME = "%Y-%m-%dT%H:%M:%S"


def ode_base_url(explicit: str | None = None) -> str:
    """Base URL: the explicit one, then ``MARSICE_ODE_URL``, then the public ODE."""
    url = explicit or os.environ.get(ODE_URL_VARIABLE) or DEFAULT_ODE_URL
    if not url.startswith(("http://", "https://")):
        raise ODEError(f"ODE URL {url!r} must start with http:// or https:// (check --ode-url / {ODE_URL_VARIABLE})")
    return url


def ode_max_response_bytes() -> int:
    """The response size limit in bytes: ``MARSICE_ODE_MAX_MB`` (MiB) or :data:`DEFAULT_MAX_RESPONSE_MB`."""
    raw = os.environ.get(ODE_MAX_MB_VARIABLE)
    if not raw:
        return DEFAULT_MAX_RESPONSE_MB * 2**20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb > 0:
        raise ODEError(f"{ODE_MAX_MB_VARIABLE}={raw!r} must be a positive number of MiB (default 64)")
    return int(mb * 2**20)


@dataclass
class ODEClient:
    """A small ODE REST client. ``sleep`` is injectable so callers can observe backoff without waiting."""

    base_url: str = DEFAULT_ODE_URL
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 2.0
    page_size: int = 100
    max_products: int = 20_000
    sleep: Callable[[float], None] = time.sleep
    max_response_bytes: int = field(default_factory=ode_max_response_bytes)

    # -- low level ------------------------------------------------------------------------------
    def request(self, params: dict[str, Any]) -> dict[str, Any]:
        """One GET with retries; returns the decoded ``ODEResults`` object (Status checked)."""
        unknown = set(params) - ODE_PARAMETERS
        if unknown:  # a programming error: ODE would silently ignore these
            raise ODEError(f"internal: parameters {sorted(unknown)} are not in the ODE REST manual")
        url = self.base_url + ("&" if "?" in self.base_url else "?") + urllib.parse.urlencode(params)
        body = self._get(url)
        try:
            decoded = json.loads(body)
            results = decoded["ODEResults"]
            if not isinstance(results, dict):
                raise TypeError("ODEResults is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise ODEError(
                f"ODE at {self.base_url} returned a malformed answer ({type(exc).__name__}: {exc}); "
                "check --ode-url, or search offline with --source bundled"
            ) from exc
        if str(results.get("Status", "")).upper() == "ERROR":
            raise ODEError(f"ODE refused the query: {results.get('Error', 'no message')}")
        return results

    def _get(self, url: str) -> bytes:
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with open_url(self._opener(), urllib.request.Request(url), self.timeout_s) as response:
                    return self._read_capped(response)
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    raise ODEError(f"ODE answered HTTP {exc.code} {exc.reason} for {url}; check --ode-url") from exc
                last = f"HTTP {exc.code} {exc.reason}"
            except StalledTransferError as exc:  # headers or body too slow (see the module docstring)
                last = str(exc)
            except TimeoutError as exc:
                last = f"no answer within {self.timeout_s:g} s ({exc})"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError | socket.timeout):
                    last = f"no answer within {self.timeout_s:g} s"
                else:
                    last = f"cannot connect ({exc.reason})"
            except (ConnectionError, OSError, HTTPException) as exc:  # reset, refused, truncated read
                last = f"connection failed ({exc!r})"
        raise ODEError(
            f"ODE at {self.base_url} failed after {self.retries + 1} tries: {last}; try again later, "
            "or search offline with --source bundled"
        )

    def _read_capped(self, response: Any) -> bytes:
        """The body, read block by block; refused (not retried) once it passes ``max_response_bytes``."""
        limit = self.max_response_bytes
        announced = announced_length(response.headers)
        if announced is not None and announced > limit:
            raise self._too_large(f"announced an answer of {announced / 2**20:.0f} MiB")
        blocks = []
        body = GuardedBody(response, self.timeout_s)
        while block := body.read(min(_READ_BLOCK, limit + 1 - body.received)):
            blocks.append(block)
            if body.received > limit:
                raise self._too_large("kept sending")
        if body.cut:  # fewer bytes than the Content-Length announced: the connection was cut
            raise IncompleteRead(b"".join(blocks), body.promised - body.received)
        return b"".join(blocks)

    def _opener(self) -> Any:
        """An opener that refuses redirects to another host (see the module docstring)."""
        return safe_opener((), refuse=self._refuse_redirect)

    def _refuse_redirect(self, old_host: str, scheme: str, host: str) -> ODEError:
        return ODEError(
            f"ODE at {self.base_url} redirected the query from {old_host} to {scheme}://{host}; refusing it, since "
            "the answer decides what is downloaded next: check --ode-url (give the new address there if you "
            "trust it)"
        )

    def _too_large(self, what: str) -> ODEError:
        return ODEError(
            f"ODE at {self.base_url} {what}, more than the {self.max_response_bytes / 2**20:g} MiB read from one "
            f"answer; narrow the search (--lat, --ls, --lon), or raise {ODE_MAX_MB_VARIABLE} if the server is trusted"
        )

    # -- searches -------------------------------------------------------------------------------
    def products(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """All products of a query, page after page (``limit``/``offset``)."""
        offset = 0
        while True:
            page = {**params, "limit": self.page_size, "offset": offset}
            results = self.request(page)
            found = product_list(results)
            yield from found
            offset += len(found)
            # Only a short page ends the list: whether "Count" is the page's or the total is not documented.
            if len(found) < self.page_size:
                return
            if offset >= self.max_products:
                raise ODEError(f"more than {self.max_products} products match; narrow the search (--lat, --ls, --lon)")

    def search(self, query: SearchQuery) -> list[CatalogueProduct]:
        """Products matching ``query``: ODE's own filters first, then every filter again locally."""
        seen: dict[str, CatalogueProduct] = {}
        for params in query_parameters(query):
            for raw in self.products(params):
                record = product_from_ode(raw)
                if record.product_id not in seen and query.matches(record):
                    seen[record.product_id] = record
        return sorted(seen.values(), key=lambda p: p.product_id)

    def product(self, product_id: str) -> CatalogueProduct:
        """One product by its id (``pdsid``), with its file list."""
        params = {
            "query": "product",
            "target": "mars",
            "ihid": "MRO",
            "iid": "HIRISE",
            "pdsid": product_id,
            "results": "opmf",
            "output": "JSON",
        }
        found = product_list(self.request(params))
        for raw in found:
            if str(raw.get("pdsid", "")).upper() == product_id.upper():
                return product_from_ode(raw)
        raise ODEError(f"ODE does not know product {product_id}; check the id (e.g. ESP_016430_2095_RED)")


def _ranges(lo: float, hi: float, full: float) -> list[tuple[float, float]]:
    """A range that may wrap (lo > hi) as one or two plain ranges within 0..full."""
    if lo <= hi:
        return [(lo, hi)]
    return [(lo, full), (0.0, hi)]


def query_parameters(query: SearchQuery) -> list[dict[str, Any]]:
    """The ODE parameter sets for a query (wrapping Ls or longitude ranges need two requests each)."""
    base: dict[str, Any] = {
        "query": "product",
        "target": "mars",
        "ihid": "MRO",
        "iid": "HIRISE",
        "pt": PRODUCT_TYPE_DTM if query.product_type == "DTM" else PRODUCT_TYPE_RDR,
        "results": "opmf",
        "output": "JSON",
        "minlat": float(query.lat[0]),
        "maxlat": float(query.lat[1]),
    }
    if query.incidence:
        base["mininangle"], base["maxinangle"] = (float(v) for v in query.incidence)
    start, end = _time_window(query)
    if start:
        base["minobtime"] = start.strftime(_ODE_TIME)
    if end:
        base["maxobtime"] = end.strftime(_ODE_TIME)
    lons = [(0.0, 360.0)]
    if query.lon is not None:
        west, east = (float(v) % 360.0 if v < 0 else float(v) for v in query.lon)
        lons = [(0.0, 360.0)] if query.lon[1] - query.lon[0] >= 360 else _ranges(west, east, 360.0)
    ls_ranges: list[tuple[float, float] | None] = (
        [None] if query.ls is None else list(_ranges(float(query.ls[0]), float(query.ls[1]), 360.0))
    )
    out = []
    for west, east in lons:
        for ls in ls_ranges:
            params = {**base, "westernlon": west, "easternlon": east}
            if ls is not None:
                params["minsollon"], params["maxsollon"] = ls
            out.append(params)
    return out


def _time_window(query: SearchQuery) -> tuple[dt.datetime | None, dt.datetime | None]:
    start = query.since
    end = None
    if query.mars_years:
        first = mars_year_start(min(query.mars_years)) - dt.timedelta(days=1)
        last = mars_year_start(max(query.mars_years) + 1) + dt.timedelta(days=1)
        start = max(start, first) if start else first
        end = last
    return start, end


def _as_list(value: Any) -> list[Any]:
    """ODE's dict-or-list shape as a list (a dict for one item, a list for several, absent for none)."""
    if value is None or isinstance(value, str):
        return []
    return value if isinstance(value, list) else [value]


def product_list(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``Product`` entries of an ``ODEResults`` object, whatever its shape."""
    products = results.get("Products")
    if products is None or isinstance(products, str):  # "No Products Found"
        return []
    if not isinstance(products, dict):
        raise ODEError("ODE returned a malformed answer (Products is neither an object nor a message)")
    found = [p for p in _as_list(products.get("Product")) if isinstance(p, dict)]
    if len(found) != len(_as_list(products.get("Product"))):
        raise ODEError("ODE returned a malformed answer (a Product entry is not an object)")
    return found


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return dt.datetime.fromisoformat(value.strip().rstrip("Z")).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _wkt(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip() or value.strip().upper().endswith("EMPTY"):
        return None
    return value.strip()


def product_from_ode(raw: dict[str, Any]) -> CatalogueProduct:
    """A catalogue record from one ODE ``Product`` object (``results=opmf``)."""
    pid = str(raw.get("pdsid", "")).strip().upper()
    if not pid:
        raise ODEError("ODE returned a product without a pdsid")
    files = []
    for f in _as_list((raw.get("Product_files") or {}).get("Product_file")):
        if isinstance(f, dict) and f.get("URL") and f.get("FileName"):
            files.append(
                ProductFile(
                    name=str(f["FileName"]),
                    url=str(f["URL"]),
                    kind=str(f.get("Type", "")),
                    description=str(f.get("Description", "")),
                    kbytes=_int(f.get("KBytes")),
                )
            )
    data_ext = (".IMG",) if product_type_of(pid) == "DTM" else (".JP2",)
    data = next((f for f in files if f.kind == "Product" and f.name.upper() == pid + data_ext[0]), None)
    label = next((f for f in files if f.kind == "Product" and f.name.upper() == pid + ".LBL"), None)
    west, east = _float(raw.get("Westernmost_longitude")), _float(raw.get("Easternmost_longitude"))
    if west is not None and east is not None and east < west:  # crosses 0°: keep the range continuous
        east += 360.0
    start = _time(raw.get("UTC_start_time")) or _time(raw.get("Observation_time"))
    ls = _float(raw.get("Solar_longitude"))
    footprint = _wkt(raw.get("Footprint_C0_geometry"))
    return CatalogueProduct(
        product_id=pid,
        observation_id=str(raw.get("Observation_id") or observation_of(pid)),
        product_type=product_type_of(pid),
        source="ode",
        start_time=start,
        mars_year=mars_year(start, ls) if start else None,
        ls=ls,
        local_time=_float(raw.get("Solar_time")),
        incidence=_float(raw.get("Incidence_angle")),
        emission=_float(raw.get("Emission_angle")),
        phase=_float(raw.get("Phase_angle")),
        min_lat=_float(raw.get("Minimum_latitude")),
        max_lat=_float(raw.get("Maximum_latitude")),
        min_lon=west,
        max_lon=east,
        map_scale=_float(raw.get("Map_scale")),
        footprint_wkt=footprint,
        footprint_approximate=footprint is None,
        footprint_note="" if footprint else "lat/lon box (ODE gave no Footprint_C0_geometry)",
        jp2_url=data.url if data else None,
        lbl_url=label.url if label else (str(raw["LabelURL"]) if raw.get("LabelURL") else None),
        files=files,
    )
