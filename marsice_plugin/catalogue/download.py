"""Download product files into the cache folder (:mod:`.cache`), safely and resumably.

Why each safeguard (the HTTP ones, redirects and deadlines, are :mod:`.http`'s, shared with the ODE client):

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
  not get better). Each try's headers and body are bounded in time by :mod:`.http`.
* File names come from a server, so they are validated (no ``/``, no ``..``, no hidden names) and
  redirects to another host are refused unless the user allows that host (``--allow-host``): a
  compromised or misconfigured mirror must not write outside the folder or send the client elsewhere.
* The folder is a cache with a size limit that may also hold the user's own files: room is made by
  :class:`~.cache.CacheFolder`, which evicts only files MarsIce wrote, and a file the user put under a
  product's name is neither used at another size nor replaced.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

from ..errors import DownloadError
from .cache import CacheFolder, Validator, file_size
from .http import (
    MIN_RATE_BYTES_S,
    GuardedBody,
    StalledTransferError,
    announced_length,
    is_web_url,
    open_url,
    safe_opener,
)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_SAFE_ID = re.compile(r"^[A-Z0-9][A-Z0-9_]{3,80}$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")

#: Slack allowed between a file's size and the listed ``KBytes`` (the listing rounds to whole KiB).
KBYTES_TOLERANCE = 1024

#: Progress callback: (file name, bytes done, bytes expected or None).
Progress = Callable[[str, int, int | None], None]

#: HEAD requests in flight at once when sizes are probed: enough to probe thousands of files in seconds
#: instead of minutes, few enough to be a fair load on one archive server.
PROBE_WORKERS = 8

#: Failures to reach a host (no HTTP answer at all) after which its other files are not probed: offline,
#: every probe of thousands would wait for its own DNS or connect failure.
PROBE_GIVE_UP = 3


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
        if not is_web_url(url):
            raise DownloadError(f"refusing URL {url!r}: only http(s) URLs with a host are downloaded")
        path = urllib.parse.urlsplit(url).path
        raw_name = name if name is not None else urllib.parse.unquote(path.rsplit("/", 1)[-1])
        return cls(validate_product_id(product_id), url, safe_file_name(raw_name), kbytes)


def _refuse_redirect(old_host: str, scheme: str, host: str) -> DownloadError:
    return DownloadError(
        f"refusing redirect from {old_host} to {scheme}://{host}: pass --allow-host {host} if you trust that host"
    )


@dataclass
class Downloader:
    """Fetches :class:`FileRequest` s into ``folder``; see the module docstring for the guarantees.

    The folder is a :class:`~.cache.CacheFolder` of ``max_cache_bytes`` (``cache``); ``log`` receives one line
    per evicted file (the CLI prints them); without it they go to the :mod:`.cache` module's logger (a scan
    worker's log).
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

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.cache = CacheFolder(self.folder, self.max_cache_bytes, self.log)
        self.records = self.cache.records
        self._opener = safe_opener(self.allowed_hosts, _refuse_redirect)

    # -- cache ----------------------------------------------------------------------------------
    def cached_files(self) -> list[Path]:
        """Every file in the folder, MarsIce's or not (partial files included): all of them hold space."""
        return self.cache.files()

    def cache_bytes(self) -> int:
        return self.cache.total_bytes()

    def make_room(self, needed: int) -> list[Path]:
        """Evict MarsIce's own least recently used files (not this run's) until ``needed`` more bytes fit."""
        return self.cache.make_room(needed)

    # -- one file -------------------------------------------------------------------------------
    def fetch(self, req: FileRequest) -> Path:
        """Download one file (or reuse the cached copy) and return its final path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / req.name
        partial = self.folder / f".{req.name}.partial"
        self.cache.keep.update((final, partial))
        size = file_size(final)
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
        done = file_size(partial) or 0
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
        current = file_size(final)
        if current is not None and not self.records.owns(final):
            # A file appeared under the real name during the download (the user's, or another process's
            # finished copy not yet recorded): it is never overwritten.
            same = current == file_size(partial)
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
        offset = file_size(partial) or 0
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
            if mode == "wb":
                offset = 0
            needed = total if total is not None else (req.kbytes * 1024 if req.kbytes is not None else None)
            if needed is not None:
                self.make_room(needed - offset)
            done, buf = offset, bytearray()
            body = GuardedBody(response, self.timeout_s, self.min_rate_bps)
            try:
                with open(partial, mode) as fh:
                    if mode == "wb":  # after the file exists, so that a pruning process sees both
                        self.records.start_partial(partial, req.url, answer)
                    try:
                        while True:
                            block = body.read(self.chunk_bytes - len(buf))
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
        if body.cut:
            return f"connection closed at byte {done} of {total if total is not None else offset + body.promised}"
        if total is not None and done < total:
            return f"connection closed at byte {done} of {total}"
        if total is None and body.unframed:
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
        return announced_length(response.headers), "wb"

    # -- sizes ----------------------------------------------------------------------------------
    def probe_size(self, url: str) -> int | None:
        """Size in bytes announced by a HEAD request, or None when the server does not say."""
        return self._probe(url)[0]

    def _probe(self, url: str) -> tuple[int | None, bool]:
        """(announced size or None, whether the host answered at all)."""
        try:
            req = urllib.request.Request(url, method="HEAD")
            with open_url(self._opener, req, self.timeout_s) as response:
                return announced_length(response.headers), True
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
