"""The download folder as a cache: which files MarsIce wrote there, and which of those it may evict.

The folder has a size limit, and it may also hold the user's own files. MarsIce keeps a record of every file it
wrote (:class:`CacheRecords`) and only ever evicts those, least recently used first and never this run's
(:class:`CacheFolder`); each eviction is reported. A file MarsIce did not write, or one the user replaced since,
is never deleted or overwritten; a run that cannot fit stops before it starts and says how much of the folder is
other files. :mod:`.download` fills the folder; the scan's workers (:mod:`marsice_plugin.scan.tasks`) share it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DownloadError

#: MarsIce's private subfolder of a cache folder, holding one record per file MarsIce wrote there.
RECORDS_DIR = ".marsice"

_LOG = logging.getLogger(__name__)


def file_size(path: Path) -> int | None:
    """The size of ``path``, or None when it is not there (another process may remove it at any moment)."""
    try:
        return path.stat().st_size
    except OSError:
        return None


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
        size = file_size(path)
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
class CacheFolder:
    """A download folder under a size limit (``max_bytes``; None: no limit), evicting only MarsIce's own files.

    ``keep`` holds the paths this run uses (its downloads, finished or partial), which are never evicted;
    the scan adds the files of products its workers are using. ``log`` receives one line per evicted file
    (the CLI prints them); without it they go to this module's logger (a scan worker's log).
    """

    folder: Path
    max_bytes: int | None = None
    log: Callable[[str], None] | None = None
    keep: set[Path] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.records = CacheRecords(self.folder)

    def files(self) -> list[Path]:
        """Every file in the folder, MarsIce's or not (partial files included): all of them hold space."""
        if not self.folder.exists():
            return []
        return [p for p in self.folder.iterdir() if p.is_file()]

    def total_bytes(self) -> int:
        return sum(s for p in self.files() if (s := file_size(p)) is not None)

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
        if self.max_bytes is None:
            return []
        limit = self.max_bytes
        if needed > limit:
            raise DownloadError(
                f"a file of {_amount(needed)} does not fit the cache limit of {_amount(limit)}; raise --cache-gb"
            )
        self.records.prune()
        sizes = {p: s for p in self.files() if (s := file_size(p)) is not None}
        used = sum(sizes.values())
        evicted: list[Path] = []
        if used + needed <= limit:
            return evicted
        mtimes = {p: p.stat().st_mtime for p in sizes if p not in self.keep and self.records.owns(p)}
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
