"""The HTTP safeguards every catalogue request goes through: ODE searches (:mod:`.ode`) and downloads.

Both ask servers that MarsIce does not control, and both must stay bounded and honest whatever those servers do,
so the rules live here once instead of in a copy per client:

* Only ``http``/``https`` URLs with a host are fetched (:func:`is_web_url`).
* A redirect to another host is refused unless the caller allows that host: a search's answer decides which URLs
  are downloaded next, and a download decides what lands in the user's folder, so neither may be handed to
  another server. Each caller says how a refusal reads (:data:`Refusal`): ODE errors stay ``ODEError``, download
  errors ``DownloadError``.
* ``timeout_s`` bounds each read of the socket, which alone does not bound a request: a server that trickles a
  byte every half second never lets one read time out. So an answer's headers must arrive within ``timeout_s``
  in total (:func:`open_url`: a watchdog shuts the socket down otherwise), and its body must average at least
  :data:`MIN_RATE_BYTES_S` over every ``timeout_s`` window (:class:`RateGuard`).
* A body that ends before the bytes its ``Content-Length`` promised was cut, not complete (:class:`GuardedBody`);
  one without a length and not chunked can be told from a cut only by a size known some other way, which is the
  caller's to check (:attr:`GuardedBody.unframed`).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from http.client import HTTPException
from typing import Any

#: The slowest average rate (bytes/s) a transfer may keep up over a ``--timeout`` window before the try is
#: abandoned as stalled: at 1 KiB/s a 500 MB JP2 would take six days, so no real download is cut by it.
MIN_RATE_BYTES_S = 1024.0

#: The URL schemes MarsIce fetches, also after a redirect.
WEB_SCHEMES = ("http", "https")

#: Builds the error for a refused redirect from (old host, new scheme, new host).
Refusal = Callable[[str, str, str], Exception]


def is_web_url(url: str) -> bool:
    """True for an ``http``/``https`` URL with a host: the only URLs a listing may make MarsIce fetch."""
    parsed = urllib.parse.urlsplit(url)
    return parsed.scheme in WEB_SCHEMES and bool(parsed.hostname)


def announced_length(headers: Any) -> int | None:
    """The ``Content-Length`` an answer announces, or None when it gives none (or not a plain number)."""
    length = headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


class StalledTransferError(TimeoutError):
    """A transfer abandoned because its server answers too slowly; the message says how (callers report it)."""


# -- redirects ---------------------------------------------------------------------------------------
class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only within the allowed hosts (the original URL's host plus the caller's list)."""

    def __init__(self, allowed: set[str], refuse: Refusal):
        super().__init__()
        self.allowed = allowed
        self.refuse = refuse

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        new = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl))
        old_host = urllib.parse.urlsplit(req.full_url).hostname or ""
        if new.scheme not in WEB_SCHEMES or (new.hostname != old_host and new.hostname not in self.allowed):
            fp.close()
            raise self.refuse(old_host, new.scheme, new.hostname or "")
        follow = super().redirect_request(req, fp, code, msg, headers, newurl)
        if follow is not None:  # the header deadline covers the whole chain of redirects
            follow.deadline = getattr(req, "deadline", None)
        return follow


# -- the deadline for an answer's headers ------------------------------------------------------------
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


class _Watched:
    """A connection that hands its socket to the request's header deadline as soon as it is connected."""

    deadline: _HeaderDeadline | None = None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]  # HTTP(S)Connection's, after this class in the MRO
        if self.deadline is not None:
            self.deadline.attach(self)


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


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


def safe_opener(allowed_hosts: Iterable[str], refuse: Refusal) -> Any:
    """A urllib opener that refuses redirects to other hosts (raising ``refuse(...)``) and supports
    :func:`open_url`'s header deadline."""
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


# -- the body ----------------------------------------------------------------------------------------
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


class GuardedBody:
    """An answer's body, read one system call at a time under a :class:`RateGuard`, that knows when it was cut.

    ``promised`` is what the answer's framing promises (its ``Content-Length``, or what is left of it for a
    206): None for a chunked answer (``http.client`` itself raises ``IncompleteRead`` when one is cut before
    its last chunk) or a close-delimited one (ended by closing the connection, so a cut looks exactly like
    the end: :attr:`unframed`).
    """

    def __init__(self, response: Any, window_s: float, min_rate: float = MIN_RATE_BYTES_S):
        self.response = response
        self.guard = RateGuard(window_s, min_rate)
        self.promised: int | None = response.length
        self.chunked = bool(response.chunked)
        self.received = 0

    def read(self, n: int) -> bytes:
        """At most ``n`` bytes from one system call; ``b""`` at the end (:class:`StalledTransferError` if slow)."""
        block = self.response.read1(n)
        self.guard.add(len(block))
        self.received += len(block)
        return block

    @property
    def cut(self) -> bool:
        """True, once the body has ended, when it ended short of its ``Content-Length``: the connection was cut."""
        return self.promised is not None and self.received < self.promised

    @property
    def unframed(self) -> bool:
        """True for an answer with neither a length nor chunks: only a size known elsewhere shows it complete."""
        return self.promised is None and not self.chunked
