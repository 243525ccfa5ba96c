"""Download product files into a size-limited cache folder, safely and resumably.

Why each safeguard:

* HiRISE JP2s are hundreds of MB to several GB, so a dropped connection resumes with an HTTP
  ``Range`` request from the bytes already in ``.NAME.partial`` instead of starting over. A resume
  sends ``If-Range`` with the validator (ETag, else Last-Modified) of the answer the partial file
  began with: appending bytes of another version of the file would corrupt it silently, so a server
  whose file changed answers with the whole new file (200) and the download starts over from byte 0,
  and a partial file whose server gave no validator is never resumed, only restarted.
* The finished size is checked against the server's announced length and against the size the
  listing gave (ODE's ``KBytes``); a mismatch deletes the partial file rather than leave a corrupt
  image that would fail, or worse half-work, in ``detect`` later. An answer without a length (chunked,
  or ended by closing the connection) counts as complete only when it ends cleanly: a cut chunked
  answer is an error in ``http.client``, but a connection closed early looks exactly like the end of
  a close-delimited answer, so such an answer must also reach the listed size, and one with no listed
  size either is refused rather than kept as a file that may be cut short.
* A file only appears under its real name by an atomic rename once complete, so a crash or a
  cancel never leaves a truncated ``.JP2`` that looks finished.
* 5xx answers, timeouts and resets are retried with exponential backoff; 4xx are not (they will
  not get better).
* ``timeout_s`` bounds each read of the socket, which alone does not bound a try: a server that
  trickles a byte every half second never lets one read time out. So the answer's headers must
  arrive within ``timeout_s`` in total (a watchdog closes the socket otherwise), and the body must
  average at least :data:`MIN_RATE_BYTES_S` over every ``timeout_s`` window.
* File names come from a server, so they are validated (no ``/``, no ``..``, no hidden names) and
  redirects to another host are refused unless the user allows that host: a compromised or
  misconfigured mirror must not write outside the folder or send the client elsewhere.
* The folder is a cache with a size limit, and it may also hold the user's own files. MarsIce keeps a
  record of every file it wrote (:class:`CacheRecords`) and only ever evicts those, least recently
  used first and never this run's; each eviction is reported. A file MarsIce did not write, or one
  the user replaced since, is never deleted or overwritten; a run that cannot fit stops before it
  starts and says how much of the folder is other files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

from ..errors import DownloadError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_SAFE_ID = re.compile(r"^[A-Z0-9][A-Z0-9_]{3,80}$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")

#: Slack allowed between a file's size and the listed ``KBytes`` (the listing rounds to whole KiB).
KBYTES_TOLERANCE = 1024

#: Progress callback: (file name, bytes done, bytes expected or None).
Progress = Callable[[str, int, int | None], None]

#: The slowest average rate (bytes/s) a transfer may keep up over a ``--timeout`` window before the try is
#: abandoned as stalled: at 1 KiB/s a 500 MB JP2 would take six days, so no real download is cut by it.
MIN_RATE_BYTES_S = 1024.0

#: HEAD requests in flight at once when sizes are probed: enough to probe thousands of files in seconds
#: instead of minutes, few enough to be a fair load on one archive server.
PROBE_WORKERS = 8

#: Failures to reach a host (no HTTP answer at all) after which its other files are not probed: offline,
#: every probe of thousands would wait for its own DNS or connect failure.
PROBE_GIVE_UP = 3

#: MarsIce's private subfolder of a cache folder, holding one record per file MarsIce wrote there.
RECORDS_DIR = ".marsice"

_LOG = logging.getLogger(__name__)


def safe_file_name(name: str) -> str:
    """A server-supplied file name, refused unless it is a plain name inside the target folder."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise DownloadError(
            f"refusing file name {name!r} from the server: only plain names (letters, digits, . _ -) are "
            "written, never paths; report the listing to its provider"
        )
    return name


def validate_product_id(product_id: str) -> str:
    """A product id typed by a user or read from a layer, upper-cased; refused if it could be a path."""
    pid = product_id.strip().upper()
    if not _SAFE_ID.match(pid):
        raise DownloadError(
            f"{product_id!r} is not a HiRISE product id (letters, digits and _ only, e.g. ESP_016430_2095_RED)"
        )
    return pid


@dataclass(frozen=True)
class FileRequest:
    """One file to fetch: where from, under which name, and the size a listing gave (KiB) if any."""

    product_id: str
    url: str
    name: str
    kbytes: int | None = None

    @classmethod
    def from_url(cls, product_id: str, url: str, kbytes: int | None = None, name: str | None = None) -> FileRequest:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise DownloadError(f"refusing URL {url!r}: only http(s) URLs with a host are downloaded")
        raw_name = name if name is not None else urllib.parse.unquote(parsed.path.rsplit("/", 1)[-1])
        return cls(validate_product_id(product_id), url, safe_file_name(raw_name), kbytes)


# -- HTTP: redirects and deadlines ------------------------------------------------------------------
#: Builds the error for a refused redirect from (old host, new scheme, new host).
Refusal = Callable[[str, str, str], Exception]


def _refuse_download_redirect(old_host: str, scheme: str, host: str) -> Exception:
    return DownloadError(
        f"refusing redirect from {old_host} to {scheme}://{host}: pass --allow-host {host} if you trust that host"
    )


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only within the allowed hosts (the original URL's host plus the user's list)."""

    def __init__(self, allowed: set[str], refuse: Refusal = _refuse_download_redirect):
        super().__init__()
        self.allowed = allowed
        self.refuse = refuse

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        new = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl))
        old_host = urllib.parse.urlsplit(req.full_url).hostname or ""
        if new.scheme not in ("http", "https") or (new.hostname != old_host and new.hostname not in self.allowed):
            fp.close()
            raise self.refuse(old_host, new.scheme, new.hostname or "")
        follow = super().redirect_request(req, fp, code, msg, headers, newurl)
        if follow is not None:  # the header deadline covers the whole chain of redirects
            follow.deadline = getattr(req, "deadline", None)
        return follow


class StalledTransferError(TimeoutError):
    """A transfer abandoned because its server answers too slowly; the message says how (callers report it)."""


class _HeaderDeadline:
    """Shuts a request's socket down when the answer's headers have not all arrived within ``seconds``.

    The socket timeout bounds each read, but ``http.client`` reads the status line and headers through a
    buffered reader that reads again and again until a line is complete: a server sending a byte now and
    then would hold a try open for as long as it likes. Shutting the socket down (from a timer thread)
    ends the blocked read with an end of file; ``fired`` tells that end apart from a real one.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.fired = False
        self._conn: Any = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def attach(self, conn: Any) -> None:
        with self._lock:
            self._conn = conn
            if self.fired:
                self._shut(conn)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shut(self._conn)

    @staticmethod
    def _shut(conn: Any) -> None:
        sock = getattr(conn, "sock", None)
        if sock is not None:
            # the plain socket's shutdown: an SSL socket's own would drop its state under the reader
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _WatchedHTTP(http.client.HTTPConnection):
    deadline: _HeaderDeadline | None = None

    def connect(self) -> None:
        super().connect()
        if self.deadline is not None:
            self.deadline.attach(self)


class _WatchedHTTPS(http.client.HTTPSConnection):
    deadline: _HeaderDeadline | None = None

    def connect(self) -> None:
        super().connect()
        if self.deadline is not None:
            self.deadline.attach(self)


def _watched(cls: type, req: urllib.request.Request) -> Callable[..., http.client.HTTPConnection]:
    def make(host: str, **kw: Any) -> http.client.HTTPConnection:
        conn = cls(host, **kw)
        conn.deadline = getattr(req, "deadline", None)
        return conn

    return make


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):  # type: ignore[override]
        return self.do_open(_watched(_WatchedHTTP, req), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):  # type: ignore[override]
        kw: dict[str, Any] = {"context": self._context}
        if hasattr(self, "_check_hostname"):  # Python 3.11 passes it on; 3.12 folded it into the context
            kw["check_hostname"] = self._check_hostname
        return self.do_open(_watched(_WatchedHTTPS, req), req, **kw)


def safe_opener(allowed_hosts: Iterable[str] = (), refuse: Refusal = _refuse_download_redirect) -> Any:
    """A urllib opener that refuses redirects to other hosts and supports :func:`open_url`'s header deadline."""
    return urllib.request.build_opener(
        _SameHostRedirects(set(allowed_hosts), refuse), _WatchedHTTPHandler(), _WatchedHTTPSHandler()
    )


def open_url(opener: Any, request: urllib.request.Request, timeout_s: float) -> Any:
    """``opener.open(request)`` whose answer's headers must arrive within ``timeout_s`` in total.

    Raises :class:`StalledTransferError` when they do not; HTTP errors and other failures pass through.
    """
    deadline = _HeaderDeadline(timeout_s)
    request.deadline = deadline  # type: ignore[attr-defined]
    deadline.start()
    try:
        response = opener.open(request, timeout=timeout_s)
    except urllib.error.HTTPError:
        raise
    except (OSError, HTTPException) as exc:
        if deadline.fired:
            raise StalledTransferError(f"no answer within {timeout_s:g} s") from exc
        raise
    finally:
        deadline.cancel()
    if deadline.fired:  # it fired just as the headers were complete: the socket is shut already
        response.close()
        raise StalledTransferError(f"no answer within {timeout_s:g} s")
    return response


class RateGuard:
    """Abandons a transfer whose average rate over a ``window_s`` window falls under ``min_rate`` bytes/s.

    Call :meth:`add` after every read (reads of at most one system call each, ``read1``, so that a slow
    server cannot hold one call open: each is bounded by the socket timeout). Windows restart once full,
    so a try that stalls is abandoned within about two windows, however it began.
    """

    def __init__(
        self, window_s: float, min_rate: float = MIN_RATE_BYTES_S, clock: Callable[[], float] = time.monotonic
    ):
        self.window_s = window_s
        self.min_rate = min_rate
        self.clock = clock
        self._start = clock()
        self._bytes = 0

    def add(self, n: int) -> None:
        self._bytes += n
        now = self.clock()
        elapsed = now - self._start
        if elapsed < self.window_s:
            return
        if self._bytes < self.min_rate * elapsed:
            raise StalledTransferError(
                f"stalled: only {self._bytes} bytes in {elapsed:.1f} s, under the {self.min_rate / 1024:g} KiB/s "
                f"a transfer must keep up over every {self.window_s:g} s (--timeout)"
            )
        self._start, self._bytes = now, 0


# -- what MarsIce wrote -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Validator:
    """What identifies one version of a file on its server: ``ETag`` and ``Last-Modified``."""

    etag: str | None = None
    last_modified: str | None = None

    @classmethod
    def of(cls, headers: Any) -> Validator:
        return cls(headers.get("ETag") or None, headers.get("Last-Modified") or None)

    @property
    def if_range(self) -> str | None:
        """The value for ``If-Range``: a strong ETag, else the date (a weak ETag may not be used there)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def contradicts(self, other: Validator) -> bool:
        """True when ``other`` names another version (a field both give differs)."""
        return bool(
            (self.etag and other.etag and self.etag != other.etag)
            or (self.last_modified and other.last_modified and self.last_modified != other.last_modified)
        )


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


class CacheRecords:
    """Which files of a cache folder MarsIce wrote: a record ``FOLDER/.marsice/NAME.json`` per file.

    A download folder is also a user's folder: it may hold their own images, or a copy they fixed by
    hand. MarsIce deletes (evicts) or replaces only files it has a record of, and only while the file
    still has the size MarsIce wrote: a file the user replaced is theirs now. Partial downloads
    (``.NAME.partial``) have a record too, holding the validator of the answer they began with.

    Why a record per file and not one shared manifest: the scan's workers, several processes and
    possibly several machines over a shared file system, download into one folder at the same time. A
    shared manifest would need read-modify-write under a file lock, and file locks are not portable
    (``fcntl`` is POSIX only and unreliable over NFS); a lost update would orphan a file or keep a record
    of one since replaced. A record is created by one atomic rename and dropped by one unlink, so
    concurrent writers never lose each other's updates and no lock is needed. The private subfolder
    keeps the records out of the user's way and goes away when it is empty.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.dir = self.folder / RECORDS_DIR

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def read(self, name: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self._path(name).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _write(self, name: str, record: dict[str, Any]) -> None:
        text = json.dumps(record, sort_keys=True)
        for _ in range(50):
            tmp = self.dir / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                self.dir.mkdir(exist_ok=True)
                tmp.write_text(text)
                os.replace(tmp, self._path(name))
                return
            except (FileNotFoundError, FileExistsError):  # raced another process removing the empty subfolder
                continue
            except OSError as exc:
                raise DownloadError(
                    f"cannot record {name} in {self.dir} ({exc}); check that the folder is writable"
                ) from exc
        raise DownloadError(f"cannot record {name} in {self.dir}; check that the folder is writable")

    def add(self, path: Path, url: str, validator: Validator | None) -> None:
        """Record a finished file MarsIce wrote, with its size."""
        v = validator or Validator()
        self._write(path.name, {"name": path.name, "size": path.stat().st_size, "url": url, "etag": v.etag,
                                "last_modified": v.last_modified, "time": _now()})  # fmt: skip

    def start_partial(self, partial: Path, url: str, validator: Validator) -> None:
        """Record a partial download and the validator of the answer its first byte came from."""
        self._write(partial.name, {"name": partial.name, "partial": True, "url": url, "etag": validator.etag,
                                   "last_modified": validator.last_modified, "time": _now()})  # fmt: skip

    def validator(self, name: str) -> Validator | None:
        record = self.read(name)
        if record is None:
            return None
        etag, modified = record.get("etag"), record.get("last_modified")
        return Validator(etag if isinstance(etag, str) else None, modified if isinstance(modified, str) else None)

    def owns(self, path: Path) -> bool:
        """True for a file MarsIce wrote and nobody replaced since (a partial download: while its record lasts)."""
        record = self.read(path.name)
        size = _size(path)
        if record is None or size is None:
            return False
        return record.get("partial") is True or record.get("size") == size

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # only when empty: a cache MarsIce holds nothing in looks untouched
            self.dir.rmdir()

    def prune(self) -> None:
        """Drop records of files that are gone (deleted by hand) and temporary files of crashed writers."""
        try:
            entries = list(self.dir.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.name.endswith(".tmp"):
                try:
                    if time.time() - entry.stat().st_mtime > 3600:
                        entry.unlink()
                except OSError:
                    pass
            elif entry.name.endswith(".json") and not (self.folder / entry.name[: -len(".json")]).exists():
                self.remove(entry.name[: -len(".json")])


def _amount(n: float) -> str:
    """Bytes for a message: GB from 0.1 GB up, MB below (a 300 kB file is not "0.00 GB")."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Downloader:
    """Fetches :class:`FileRequest` s into ``folder``; see the module docstring for the guarantees.

    ``log`` receives one line per evicted file (the CLI prints them); without it they go to this module's
    logger (a scan worker's log).
    """

    folder: Path
    max_cache_bytes: int | None = None
    allowed_hosts: Iterable[str] = ()
    retries: int = 4
    backoff_s: float = 2.0
    timeout_s: float = 60.0
    chunk_bytes: int = 1 << 16
    progress: Progress | None = None
    sleep: Callable[[float], None] = time.sleep
    log: Callable[[str], None] | None = None
    min_rate_bps: float = MIN_RATE_BYTES_S
    _keep: set[Path] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.records = CacheRecords(self.folder)
        self._opener = safe_opener(self.allowed_hosts)

    # -- cache ----------------------------------------------------------------------------------
    def cached_files(self) -> list[Path]:
        """Every file in the folder, MarsIce's or not (partial files included): all of them hold space."""
        if not self.folder.exists():
            return []
        return [p for p in self.folder.iterdir() if p.is_file()]

    def cache_bytes(self) -> int:
        return sum(s for p in self.cached_files() if (s := _size(p)) is not None)

    def _say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)
        else:
            _LOG.info(message)

    def make_room(self, needed: int) -> list[Path]:
        """Evict MarsIce's own least recently used files (not this run's) until ``needed`` more bytes fit.

        The limit counts everything in the folder, since it is what the user's disk holds; only files with a
        :class:`CacheRecords` record are ever deleted, each one reported through ``log``.
        """
        if self.max_cache_bytes is None:
            return []
        limit = self.max_cache_bytes
        if needed > limit:
            raise DownloadError(
                f"a file of {_amount(needed)} does not fit the cache limit of {_amount(limit)}; raise --cache-gb"
            )
        self.records.prune()
        sizes = {p: s for p in self.cached_files() if (s := _size(p)) is not None}
        used = sum(sizes.values())
        evicted: list[Path] = []
        if used + needed <= limit:
            return evicted
        mtimes = {p: p.stat().st_mtime for p in sizes if p not in self._keep and self.records.owns(p)}
        if used - sum(sizes[p] for p in mtimes) + needed > limit:
            mtimes = {}  # evicting all it may would not be enough: delete nothing, say why below
        for victim in sorted(mtimes, key=mtimes.__getitem__):
            if used + needed <= limit:
                break
            if not self.records.owns(victim):  # replaced by the user a moment ago: theirs now
                continue
            victim.unlink(missing_ok=True)  # missing: another process evicted it first
            self.records.remove(victim.name)
            used -= sizes[victim]
            evicted.append(victim)
            used_on = dt.datetime.fromtimestamp(mtimes[victim], dt.UTC).strftime("%Y-%m-%d %H:%M")
            self._say(
                f"cache: evicted {victim.name} ({sizes[victim] / 1e6:.1f} MB, downloaded by MarsIce, last used "
                f"{used_on} UTC) to keep {self.folder} under {limit / 1e9:g} GB"
            )
        if used + needed > limit:
            other = sum(s for p, s in sizes.items() if p.exists() and not self.records.owns(p))
            raise DownloadError(
                f"the cache limit of {_amount(limit)} cannot hold this run's files ({_amount(needed)} more): "
                f"{self.folder} holds {_amount(other)} of files MarsIce did not download, which it never deletes, "
                f"and {_amount(used - other)} of downloads in use; raise --cache-gb, move the other files out, or "
                "download into a folder of its own"
            )
        return evicted

    # -- one file -------------------------------------------------------------------------------
    def fetch(self, req: FileRequest) -> Path:
        """Download one file (or reuse the cached copy) and return its final path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / req.name
        partial = self.folder / f".{req.name}.partial"
        self._keep.update((final, partial))
        size = _size(final)
        if size is not None:
            if self._size_ok(size, req.kbytes):
                if self.records.owns(final):
                    os.utime(final)  # most recently used; a file of the user's is left exactly as it is
                return final
            if not self.records.owns(final):
                raise self._not_ours(final, size, req)
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            outcome = self._attempt(req, partial)
            if isinstance(outcome, str):
                last = outcome
                continue
            size = partial.stat().st_size
            if outcome is not None and size != outcome:
                self._discard(partial)
                raise DownloadError(
                    f"{req.name}: received {size} bytes but the server announced {outcome}; the file was "
                    "deleted; try again later or report it to the archive"
                )
            if not self._size_ok(size, req.kbytes):
                self._discard(partial)
                raise DownloadError(
                    f"{req.name}: received {size} bytes but the listing says {req.kbytes} KiB; the file was "
                    "deleted (corrupt or changed on the server); search again to refresh the listing"
                )
            return self._finish(req, partial, final)
        done = _size(partial) or 0
        validator = self.records.validator(partial.name)
        if done and (validator is None or validator.if_range is None):
            self._discard(partial)
            raise DownloadError(
                f"{req.name}: download failed after {self.retries + 1} tries ({last}); the server gives no ETag "
                "or Last-Modified, so a resume could mix two versions of the file: the bytes received were "
                "deleted; run the same command again to start over"
            )
        raise DownloadError(
            f"{req.name}: download failed after {self.retries + 1} tries ({last}); {done} bytes are kept in "
            f"{partial.name}: run the same command again to resume"
        )

    def _not_ours(self, final: Path, size: int, req: FileRequest) -> DownloadError:
        return DownloadError(
            f"{final} is already there with {size} bytes where the listing says {req.kbytes} KiB, and MarsIce did "
            f"not download it, so it is neither used nor replaced; move it out of {self.folder} and run again"
        )

    def _discard(self, partial: Path) -> None:
        partial.unlink(missing_ok=True)
        self.records.remove(partial.name)

    def _finish(self, req: FileRequest, partial: Path, final: Path) -> Path:
        """Rename the complete partial file into place and record it as MarsIce's."""
        current = _size(final)
        if current is not None and not self.records.owns(final):
            # A file appeared under the real name during the download (the user's, or another process's
            # finished copy not yet recorded): it is never overwritten.
            same = current == _size(partial)
            self._discard(partial)
            if same:
                return final
            raise self._not_ours(final, current, req)
        validator = self.records.validator(partial.name)
        os.replace(partial, final)
        self.records.add(final, req.url, validator)
        self.records.remove(partial.name)
        return final

    @staticmethod
    def _size_ok(size: int, kbytes: int | None) -> bool:
        return kbytes is None or abs(size - kbytes * 1024) <= KBYTES_TOLERANCE

    def _attempt(self, req: FileRequest, partial: Path) -> int | None | str:
        """One try: returns the announced total size (None if unknown), or a string saying why it failed."""
        offset = _size(partial) or 0
        validator = self.records.validator(partial.name) if offset else None
        if validator is None or validator.if_range is None or not self.records.owns(partial):
            offset = 0  # nothing says the partial bytes are of the file the server has now: start over
        headers = {"Range": f"bytes={offset}-", "If-Range": validator.if_range} if offset and validator else {}
        try:
            response = open_url(self._opener, urllib.request.Request(req.url, headers=headers), self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # our partial is not a prefix the server recognises: start over
                self._discard(partial)
                return f"HTTP 416 for a resume from byte {offset}; restarting"
            if exc.code >= 500:
                return f"HTTP {exc.code} {exc.reason}"
            raise DownloadError(f"{req.url}: HTTP {exc.code} {exc.reason}; check the product id or URL") from exc
        except urllib.error.URLError as exc:
            return f"cannot connect ({exc.reason})"
        except TimeoutError as exc:
            return str(exc) if isinstance(exc, StalledTransferError) else f"no answer within {self.timeout_s:g} s"
        except (ConnectionError, HTTPException, OSError) as exc:
            return f"connection failed ({exc})"
        with response:
            answer = Validator.of(response.headers)
            if offset and validator and response.status == 206 and validator.contradicts(answer):
                self._discard(partial)
                return "the server answered a resume with another version of the file; restarting from byte 0"
            total, mode = self._total(response, offset)
            body_length = response.length  # what this answer's framing promises; None: chunked or close-delimited
            chunked = bool(response.chunked)
            if mode == "wb":
                offset = 0
            needed = total if total is not None else (req.kbytes * 1024 if req.kbytes is not None else None)
            if needed is not None:
                self.make_room(needed - offset)
            done, buf = offset, bytearray()
            guard = RateGuard(self.timeout_s, self.min_rate_bps)
            try:
                with open(partial, mode) as fh:
                    if mode == "wb":  # after the file exists, so that a pruning process sees both
                        self.records.start_partial(partial, req.url, answer)
                    try:
                        while True:
                            block = response.read1(self.chunk_bytes - len(buf))
                            guard.add(len(block))
                            buf += block
                            if buf and (not block or len(buf) >= self.chunk_bytes):
                                fh.write(buf)
                                done += len(buf)
                                buf.clear()
                                if self.progress:
                                    self.progress(req.name, done, total)
                            if not block:
                                break
                    finally:  # what arrived before a failure is kept for the resume
                        if buf:
                            fh.write(buf)
                            done += len(buf)
            except StalledTransferError as exc:
                return f"{exc}, at byte {done}"
            except TimeoutError:
                return f"stalled for {self.timeout_s:g} s at byte {done}"
            except (ConnectionError, HTTPException, OSError) as exc:
                return f"connection lost at byte {done} ({exc!r})"
        if body_length is not None and done - offset < body_length:
            return f"connection closed at byte {done} of {total if total is not None else offset + body_length}"
        if total is not None and done < total:
            return f"connection closed at byte {done} of {total}"
        if total is None and body_length is None and not chunked:
            # Close-delimited: a connection closed early looks exactly like the end of the file.
            if req.kbytes is None:
                self._discard(partial)
                raise DownloadError(
                    f"{req.name}: the server sent it without a length (no Content-Length, not chunked) and the "
                    "listing gives no size, so a cut connection cannot be told from the end of the file; nothing "
                    "was kept: download it through a listing that gives sizes (marsice search --source ode -o "
                    "footprints.gpkg, then marsice download --from footprints.gpkg)"
                )
            if done < req.kbytes * 1024 - KBYTES_TOLERANCE:
                return f"connection closed at byte {done}, short of the {req.kbytes} KiB listed (no length sent)"
        return total

    @staticmethod
    def _total(response: Any, offset: int) -> tuple[int | None, str]:
        """(total size, file mode): append on a matching 206, start over on a 200."""
        if offset and response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise DownloadError(
                    f"the server answered a resume from byte {offset} with Content-Range "
                    f"{response.headers.get('Content-Range')!r}; delete the .partial file and retry"
                )
            return (None if match.group(3) == "*" else int(match.group(3))), "ab"
        length = response.headers.get("Content-Length")
        return (int(length) if length and length.isdigit() else None), "wb"

    # -- sizes ----------------------------------------------------------------------------------
    def probe_size(self, url: str) -> int | None:
        """Size in bytes announced by a HEAD request, or None when the server does not say."""
        return self._probe(url)[0]

    def _probe(self, url: str) -> tuple[int | None, bool]:
        """(announced size or None, whether the host answered at all)."""
        try:
            req = urllib.request.Request(url, method="HEAD")
            with open_url(self._opener, req, self.timeout_s) as response:
                length = response.headers.get("Content-Length")
                return (int(length) if length and length.isdigit() else None), True
        except urllib.error.HTTPError:
            return None, True
        except (urllib.error.URLError, HTTPException, OSError):
            return None, False

    def probe_sizes(self, urls: Sequence[str], workers: int = PROBE_WORKERS) -> dict[str, int | None]:
        """Sizes announced by HEAD requests, ``workers`` at a time; None where unknown.

        One at a time, thousands of probes took minutes (2,818 took 140 s offline). A host that failed to
        answer :data:`PROBE_GIVE_UP` times, and never answered, is not asked about its other files: they stay
        unknown, which the callers treat as unknown, never as zero.
        """
        unique = list(dict.fromkeys(urls))
        failures: dict[str, int] = {}
        reached: set[str] = set()
        lock = threading.Lock()

        def one(url: str) -> tuple[str, int | None]:
            host = urllib.parse.urlsplit(url).hostname or ""
            with lock:
                if host not in reached and failures.get(host, 0) >= PROBE_GIVE_UP:
                    return url, None
            size, answered = self._probe(url)
            with lock:
                if answered:
                    reached.add(host)
                else:
                    failures[host] = failures.get(host, 0) + 1
            return url, size

        if not unique:
            return {}
        pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique))), thread_name_prefix="marsice-probe")
        try:
            return dict(pool.map(one, unique))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
