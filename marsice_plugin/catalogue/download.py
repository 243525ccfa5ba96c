"""Download product files into a size-limited cache folder, safely and resumably.

Why each safeguard:

* HiRISE JP2s are hundreds of MB to several GB, so a dropped connection resumes with an HTTP
  ``Range`` request from the bytes already in ``.NAME.partial`` instead of starting over.
* The finished size is checked against the server's announced length and against the size the
  listing gave (ODE's ``KBytes``); a mismatch deletes the partial file rather than leave a corrupt
  image that would fail, or worse half-work, in ``detect`` later.
* A file only appears under its real name by an atomic rename once complete, so a crash or a
  cancel never leaves a truncated ``.JP2`` that looks finished.
* 5xx answers, timeouts and resets are retried with exponential backoff; 4xx are not (they will
  not get better).
* File names come from a server, so they are validated (no ``/``, no ``..``, no hidden names) and
  redirects to another host are refused unless the user allows that host: a compromised or
  misconfigured mirror must not write outside the folder or send the client elsewhere.
* The folder is a cache with a size limit: the least recently used files (not those of the current
  run) are evicted to make room, and a run that cannot fit stops before it starts.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path

from ..errors import DownloadError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_SAFE_ID = re.compile(r"^[A-Z0-9][A-Z0-9_]{3,80}$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")

#: Slack allowed between a file's size and the listed ``KBytes`` (the listing rounds to whole KiB).
KBYTES_TOLERANCE = 1024

#: Progress callback: (file name, bytes done, bytes expected or None).
Progress = Callable[[str, int, int | None], None]


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


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only within the allowed hosts (the original URL's host plus the user's list)."""

    def __init__(self, allowed: set[str]):
        super().__init__()
        self.allowed = allowed

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        new = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl))
        old_host = urllib.parse.urlsplit(req.full_url).hostname
        if new.scheme not in ("http", "https") or (new.hostname != old_host and new.hostname not in self.allowed):
            raise DownloadError(
                f"refusing redirect from {old_host} to {new.scheme}://{new.hostname}: pass --allow-host "
                f"{new.hostname} if you trust that host"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass
class Downloader:
    """Fetches :class:`FileRequest` s into ``folder``; see the module docstring for the guarantees."""

    folder: Path
    max_cache_bytes: int | None = None
    allowed_hosts: Iterable[str] = ()
    retries: int = 4
    backoff_s: float = 2.0
    timeout_s: float = 60.0
    chunk_bytes: int = 1 << 16
    progress: Progress | None = None
    sleep: Callable[[float], None] = time.sleep
    _keep: set[Path] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self._opener = urllib.request.build_opener(_SameHostRedirects(set(self.allowed_hosts)))

    # -- cache ----------------------------------------------------------------------------------
    def cached_files(self) -> list[Path]:
        """Finished files in the cache folder (partial files included: they hold space too)."""
        if not self.folder.exists():
            return []
        return [p for p in self.folder.iterdir() if p.is_file()]

    def cache_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.cached_files())

    def make_room(self, needed: int) -> list[Path]:
        """Evict least recently used files (not this run's) until ``needed`` more bytes fit the limit."""
        if self.max_cache_bytes is None:
            return []
        if needed > self.max_cache_bytes:
            raise DownloadError(
                f"a file of {needed / 1e9:.2f} GB does not fit the cache limit of "
                f"{self.max_cache_bytes / 1e9:.2f} GB; raise --cache-gb"
            )
        evicted = []
        files = sorted((p for p in self.cached_files() if p not in self._keep), key=lambda p: p.stat().st_mtime)
        used = self.cache_bytes()
        while used + needed > self.max_cache_bytes and files:
            victim = files.pop(0)
            used -= victim.stat().st_size
            victim.unlink()
            evicted.append(victim)
        if used + needed > self.max_cache_bytes:
            raise DownloadError(
                f"the cache limit of {self.max_cache_bytes / 1e9:.2f} GB cannot hold this run's files; "
                "raise --cache-gb or download fewer products"
            )
        return evicted

    # -- one file -------------------------------------------------------------------------------
    def fetch(self, req: FileRequest) -> Path:
        """Download one file (or reuse the cached copy) and return its final path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / req.name
        partial = self.folder / f".{req.name}.partial"
        self._keep.update((final, partial))
        if final.exists() and self._size_ok(final.stat().st_size, req.kbytes):
            os.utime(final)  # most recently used
            return final
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
                partial.unlink(missing_ok=True)
                raise DownloadError(
                    f"{req.name}: received {size} bytes but the server announced {outcome}; the file was "
                    "deleted; try again later or report it to the archive"
                )
            if not self._size_ok(size, req.kbytes):
                partial.unlink(missing_ok=True)
                raise DownloadError(
                    f"{req.name}: received {size} bytes but the listing says {req.kbytes} KiB; the file was "
                    "deleted (corrupt or changed on the server); search again to refresh the listing"
                )
            os.replace(partial, final)
            return final
        done = partial.stat().st_size if partial.exists() else 0
        raise DownloadError(
            f"{req.name}: download failed after {self.retries + 1} tries ({last}); {done} bytes are kept in "
            f"{partial.name}: run the same command again to resume"
        )

    @staticmethod
    def _size_ok(size: int, kbytes: int | None) -> bool:
        return kbytes is None or abs(size - kbytes * 1024) <= KBYTES_TOLERANCE

    def _attempt(self, req: FileRequest, partial: Path) -> int | None | str:
        """One try: returns the announced total size (None if unknown), or a string saying why it failed."""
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = self._opener.open(urllib.request.Request(req.url, headers=headers), timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # our partial is not a prefix the server recognises: start over
                partial.unlink()
                return f"HTTP 416 for a resume from byte {offset}; restarting"
            if exc.code >= 500:
                return f"HTTP {exc.code} {exc.reason}"
            raise DownloadError(f"{req.url}: HTTP {exc.code} {exc.reason}; check the product id or URL") from exc
        except urllib.error.URLError as exc:
            return f"cannot connect ({exc.reason})"
        except TimeoutError:
            return f"no answer within {self.timeout_s:g} s"
        except (ConnectionError, HTTPException, OSError) as exc:
            return f"connection failed ({exc})"
        with response:
            total, mode = self._total(response, offset)
            if mode == "wb":
                offset = 0
            if total is not None:
                self.make_room(total - offset)
            done = offset
            try:
                with open(partial, mode) as fh:
                    while block := response.read(self.chunk_bytes):
                        fh.write(block)
                        done += len(block)
                        if self.progress:
                            self.progress(req.name, done, total)
            except TimeoutError:
                return f"stalled for {self.timeout_s:g} s at byte {done}"
            except (ConnectionError, HTTPException, OSError) as exc:
                return f"connection lost at byte {done} ({exc})"
        if total is not None and done < total:
            return f"connection closed at byte {done} of {total}"
        return total

    @staticmethod
    def _total(response, offset: int) -> tuple[int | None, str]:
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

    def probe_size(self, url: str) -> int | None:
        """Size in bytes announced by a HEAD request, or None when the server does not say."""
        try:
            req = urllib.request.Request(url, method="HEAD")
            with self._opener.open(req, timeout=self.timeout_s) as response:
                length = response.headers.get("Content-Length")
                return int(length) if length and length.isdigit() else None
        except (urllib.error.URLError, HTTPException, OSError):
            return None
