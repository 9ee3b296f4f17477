"""`learncast serve`: the local storage backend's folder over HTTP, as podcast apps need it.

Podcast apps (Apple's above all) seek in enclosures with byte ranges and refuse servers that
ignore them, so this serves `Range` (including suffix `-500` and open `500-` ranges) with 206,
`HEAD`, validators (`ETag`, `Last-Modified`, conditional requests → 304) and the content type
recorded at upload. Web players and LMS pages on other origins play the media with its captions
(`<video crossorigin>` + `<track>`), so every file carries CORS headers and preflights are
answered. Nothing else is exposed: no directory listings, no metadata sidecars, no hidden files,
no symlinks, and no path — however it is encoded — that leaves the public folder.

Hostile or broken clients cannot take it down or make it lie:

- Each file is opened once, walking from a descriptor of the public folder one component at a
  time with `O_NOFOLLOW` (a symlink swapped in mid-request is refused, not followed), and its
  length, ETag and bytes all come from that open file: a feed replaced atomically meanwhile is
  sent whole, old or new, never a mix.
- Connections are bounded (below the open-files limit) and timed: a request's head must arrive
  within `request_timeout` of the connection becoming ready for it (idle keep-alive included),
  a client that stops reading is dropped after `send_timeout`, and when every slot is taken
  the longest-waiting idle connection makes room for the new one.
- A request body (GET has none) is read and discarded, or the connection is closed, so it can
  never be read as a second request; range numbers of any length are parsed without `int()`
  on thousands of digits; control characters are escaped in the log.

Private shows (`pipeline.learners`) are checked by a gate before any file is opened: their
paths answer only to a learner's valid token (`/p/<token>/<key>`), and a wrong, revoked or
malformed token gets the very 404 a missing file gets. Tokens never reach a log. With
`[stats] enabled`, each request is also written to the access log the listening figures are
counted from (`pipeline.stats`).

It is the standard library's threaded HTTP server: fine for a team's intranet or a laptop
demo. Large audiences belong on object storage and a CDN (the s3 backend).
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import hashlib
import json
import logging
import os
import re
import resource
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

from pipeline.storage.base import content_type_for, http_content_type
from pipeline.storage.local import META_SUFFIX, is_internal

if TYPE_CHECKING:
    from pipeline.stats.logs import AccessLog

log = logging.getLogger(__name__)

DEFAULT_CACHE_CONTROL = "no-cache"
RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII)
#: More digits than this is beyond any file's size: no int() on thousands of digits.
MAX_RANGE_DIGITS = 18
#: Connections served at once (lowered to fit the open-files limit, see `connection_cap`).
DEFAULT_MAX_CONNECTIONS = 256
#: Seconds from a connection being ready for a request (new, or idle after one) until the
#: request's head must have arrived in full.
DEFAULT_REQUEST_TIMEOUT_S = 20.0
#: Seconds a client may stop reading (or sending) before the connection is dropped.
DEFAULT_SEND_TIMEOUT_S = 60.0
#: A request body this small is read and thrown away; a larger one closes the connection.
MAX_DISCARDED_BODY = 64 * 1024
#: Open files per connection at most (socket, folder while walking, file, its metadata)
#: and those kept for the server itself (listening socket, log files, the interpreter).
FDS_PER_CONNECTION, FDS_RESERVED = 4, 64
MAX_META_BYTES = 64 * 1024
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers":
        "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified",
}
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, If-None-Match, If-Modified-Since, If-Range",
    "Access-Control-Max-Age": "86400",
}
#: Control characters (and the backslash that escapes them) as they are written to the log.
LOG_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
LOG_ESCAPES[ord("\\")] = "\\\\"
#: A personal URL's token, as it is blanked out of log lines.
TOKEN_IN_PATH = re.compile(r"/p/[^/\s?]*")
FEED_TYPE = "application/rss+xml; charset=utf-8"
MAX_READ_BYTES = 32 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def _bounded_int(digits: str) -> int:
    """Decimal digits → int; anything past MAX_RANGE_DIGITS digits reads as 10**18."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_RANGE_DIGITS else 10 ** MAX_RANGE_DIGITS


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """One byte range → (first, last) inclusive; "unsatisfiable"; or None to send it all.

    Several ranges or a malformed header are answered with the whole file, which RFC 9110
    allows; a range that starts beyond the end is unsatisfiable (416). Numbers of any length
    are accepted as the RFC says, without converting thousands of digits.
    """
    m = RANGE_RE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first_s, last_s = m.groups()
    if not first_s:  # suffix range: the last N bytes
        n = _bounded_int(last_s)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    first = _bounded_int(first_s)
    last = _bounded_int(last_s) if last_s else None
    if last is not None and last < first:
        return None  # malformed
    if first >= size:
        return "unsatisfiable"
    return first, size - 1 if last is None else min(last, size - 1)


def connection_cap(wanted: int) -> int:
    """`wanted`, lowered so that connections can never exhaust the open-files limit (then
    `accept` would fail and the server could answer nobody)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (soft - FDS_RESERVED) // FDS_PER_CONNECTION))


@dataclass
class _Slot:
    """One open connection: since when it waits for a request head (None: serving one)."""

    sock: socket.socket
    waiting_since: float | None


@dataclass(frozen=True)
class Access:
    """What the gate lets a request have: the public file at `parts`, or a `feed` made for
    it (bytes); `learner` is the pseudonym logged for per-learner figures; `logged` is the
    path as logs may hold it (never a token)."""

    parts: list[str] | None = None
    feed: bytes | None = None
    learner: str | None = None
    logged: str = ""


class Gate(Protocol):
    """Decides what a request path may have (`pipeline.learners.PrivateGate`); None: 404.
    `read(parts)` reads a public file safely (for a feed to be made personal)."""

    def resolve(self, parts: list[str], read: Callable[[list[str]], bytes | None],
                ) -> Access | None: ...


@dataclass(frozen=True)
class PublicFile:
    """A public file, opened: everything about the response comes from this descriptor."""

    fd: int
    st: os.stat_result
    meta: dict[str, Any]


class PublicServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, root: Path, address: tuple[str, int], *,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
                 send_timeout: float = DEFAULT_SEND_TIMEOUT_S,
                 gate: Gate | None = None, access_log: AccessLog | None = None) -> None:
        self.root = root.resolve()
        self.gate = gate
        self.access_log = access_log
        self.max_connections = connection_cap(max_connections)
        self.request_timeout = request_timeout
        self.send_timeout = send_timeout
        self._slots: dict[socket.socket, _Slot] = {}
        self._slots_lock = threading.Lock()
        self._last_accept_warning = 0.0
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        # The folder, held open: every file is opened relative to it, never by a full path.
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            super().__init__(address, PublicHandler)
        except BaseException:
            os.close(self.root_fd)
            raise
        if self.max_connections < max_connections:
            log.info("[serve] at most %d connections at once (the open-files limit, ulimit -n, "
                     "allows no more)", self.max_connections)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    # --- connection slots (the accept loop's thread and the handlers' threads) -------------

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # Out of descriptors despite the cap (other code in this process): wait a
                # little instead of polling the listening socket in a busy loop.
                now = time.monotonic()
                if now - self._last_accept_warning > 60:
                    self._last_accept_warning = now
                    log.warning("[serve] cannot accept connections (%s); raise the open-files "
                                "limit (ulimit -n)", exc.strerror)
                time.sleep(0.1)
            raise

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Take a slot for a new connection; when all are taken, close the longest-idle
        connection, or turn the new one away with 503 when every slot is busy serving."""
        with self._slots_lock:
            if len(self._slots) >= self.max_connections:
                idle = [s for s in self._slots.values() if s.waiting_since is not None]
                if not idle:
                    self._turn_away(request)
                    return False
                victim = min(idle, key=lambda s: s.waiting_since or 0.0)
                self._close_slot(victim)
            self._slots[request] = _Slot(request, time.monotonic())
        return True

    def shutdown_request(self, request: Any) -> None:
        with self._slots_lock:
            self._slots.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Between accepts: close connections whose request head is overdue (idle
        keep-alive, or a head trickling in a byte at a time)."""
        deadline = time.monotonic() - self.request_timeout
        with self._slots_lock:
            for slot in list(self._slots.values()):
                if slot.waiting_since is not None and slot.waiting_since < deadline:
                    self._close_slot(slot)

    def mark(self, sock: socket.socket, *, waiting: bool) -> None:
        with self._slots_lock:
            slot = self._slots.get(sock)
            if slot is not None:
                slot.waiting_since = time.monotonic() if waiting else None

    def _close_slot(self, slot: _Slot) -> None:
        """Wake the handler blocked reading from `slot` (it sees end of file and finishes)."""
        self._slots.pop(slot.sock, None)
        with contextlib.suppress(OSError):
            slot.sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _turn_away(sock: socket.socket) -> None:
        body = b"busy: every connection is serving a file; try again in a few seconds\n"
        try:
            sock.setblocking(False)
            sock.send(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n"
                      b"Connection: close\r\nContent-Type: text/plain\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass

    def server_close(self) -> None:
        super().server_close()
        with contextlib.suppress(OSError):
            os.close(self.root_fd)

    # --- files ---------------------------------------------------------------------------

    def open_public(self, parts: list[str]) -> PublicFile | None:
        """Open root/parts[0]/.../parts[-1], refusing symlinks and anything but a regular file
        at every step; None when there is no such public file."""
        folder = self.root_fd
        try:
            for part in parts[:-1]:
                inner = os.open(part, _DIR_FLAGS, dir_fd=folder)
                if folder != self.root_fd:
                    os.close(folder)
                folder = inner
            name = parts[-1]
            # Checked before opening too: opening a FIFO or a device has effects of its own.
            if not stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
                return None
            fd = os.open(name, _FILE_FLAGS, dir_fd=folder)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                return None
            return PublicFile(fd, st, _read_meta_at(folder, name + META_SUFFIX))
        except (OSError, ValueError):
            return None  # missing, a symlink (ELOOP), not a folder (ENOTDIR), a NUL...
        finally:
            if folder != self.root_fd:
                os.close(folder)


    def read_public(self, parts: list[str]) -> bytes | None:
        """A public file's bytes (a feed), opened as every file is; None if there is none."""
        found = self.open_public(parts)
        if found is None:
            return None
        with os.fdopen(found.fd, "rb") as fh:
            data = fh.read(MAX_READ_BYTES + 1)
        return data if len(data) <= MAX_READ_BYTES else None


def _read_meta_at(folder: int, name: str) -> dict[str, Any]:
    """A file's metadata sidecar, read through the same folder descriptor ({} if none)."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=folder)
    except OSError:
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        data = json.loads(os.read(fd, MAX_META_BYTES).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else {}


class PublicHandler(BaseHTTPRequestHandler):
    server: PublicServer
    server_version = "learncast"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.send_timeout)

    def handle_one_request(self) -> None:
        self.server.mark(self.connection, waiting=True)
        self._responded = False
        self._outcome: dict[str, Any] = {}
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError):
            self.close_connection = True  # the client went quiet or away: normal
        except Exception:  # a bug: answer 500 (if still possible) rather than go silent
            log.exception("[serve] internal error on %s",
                          self._escaped(_redacted(getattr(self, "requestline", ""))))
            if not self._responded:
                with contextlib.suppress(OSError):
                    self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR)
            self.close_connection = True

    def send_response(self, code: int, message: str | None = None) -> None:
        self._responded = True
        super().send_response(code, message)

    # --- resolving --------------------------------------------------------------------------

    def _parts(self) -> list[str] | None:
        """The requested path's segments, or None (→ 404) for anything not a public name."""
        raw = urlsplit(self.path).path
        if not raw.startswith("/"):
            return None
        try:
            decoded = unquote(raw, errors="strict") if "%" in raw else raw
        except UnicodeDecodeError:
            return None
        if "\x00" in decoded or "\\" in decoded:
            return None
        parts = [p for p in decoded.split("/") if p]
        # `..` and `.` segments, hidden files, sidecars and half-written temp files: never.
        if not parts or any(p.startswith(".") or is_internal(p) for p in parts):
            return None
        return parts

    def _access(self) -> Access | None:
        """What the request may have (the gate decides for private shows), or None."""
        parts = self._parts()
        if not parts:
            return None
        if self.server.gate is None:
            return Access(parts=parts, logged="/" + "/".join(parts))
        return self.server.gate.resolve(parts, self.server.read_public)

    def _open(self, access: Access | None) -> tuple[str, PublicFile] | None:
        """(file name, the open file) for the requested public file, or None."""
        parts = access.parts if access is not None else None
        found = self.server.open_public(parts) if parts else None
        return (parts[-1], found) if parts and found else None

    # --- methods ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self._discard_body():
            self._serve(body=True)

    def do_HEAD(self) -> None:
        if self._discard_body():
            self._serve(body=False)

    def do_OPTIONS(self) -> None:
        """CORS preflight (a player asking whether it may send `Range`)."""
        if not self._discard_body():
            return
        access = self._access()
        if access is not None and access.feed is None:
            found = self._open(access)
            if found is None:
                access = None
            else:
                os.close(found[1].fd)
        if access is None:
            self.send_error(HTTPStatus.NOT_FOUND, "Not Found")
            return
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Allow", "GET, HEAD, OPTIONS")
        for name, value in {**CORS_HEADERS, **PREFLIGHT_HEADERS}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _not_allowed(self) -> None:
        if not self._discard_body():
            return
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD, OPTIONS")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def _discard_body(self) -> bool:
        """Read and drop a request body so it is never parsed as the next request; answer
        400/413 and close when that cannot be done safely. False when answered here."""
        if self.headers.get("Transfer-Encoding") is not None:
            self.send_error(HTTPStatus.BAD_REQUEST, "request bodies are not accepted here")
            return False
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self.server.mark(self.connection, waiting=False)  # the request is in: serve it
            return True
        value = lengths[0].strip()
        if len(lengths) > 1 or not value.isascii() or not value.isdigit() or len(value) > 18:
            self.send_error(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return False
        length = int(value)
        if length > MAX_DISCARDED_BODY:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            "request bodies are not accepted here")
            return False
        while length > 0:  # still within the request's deadline: a trickled body is cut off
            chunk = self.rfile.read(min(length, 16384))
            if not chunk:
                self.close_connection = True
                return False
            length -= len(chunk)
        self.server.mark(self.connection, waiting=False)  # the request is in: serve it
        return True

    # --- serving ----------------------------------------------------------------------------

    def _serve(self, *, body: bool) -> None:
        access = self._access()
        try:
            if access is not None and access.feed is not None:
                self._respond_bytes(access.feed, FEED_TYPE, body=body)
                return
            found = self._open(access)
            if found is None:
                self.send_error(HTTPStatus.NOT_FOUND, "Not Found")
                return
            name, public = found
            self._outcome["size"] = public.st.st_size
            with os.fdopen(public.fd, "rb") as fh:
                self._respond(name, fh, public.st, public.meta, body=body)
        finally:
            self._log_access(access)

    def _log_access(self, access: Access | None) -> None:
        """One line in the access log (when there is one): never a token."""
        if self.server.access_log is None:
            return
        raw = urlsplit(self.path).path
        logged = access.logged if access is not None else _redacted(raw)
        out = self._outcome
        self.server.access_log.write({
            "ip": self.client_address[0], "ua": self.headers.get("User-Agent", ""),
            "method": self.command, "path": self._escaped(logged)[:2000],
            "status": out.get("status", 0), "sent": out.get("sent", 0),
            "first": out.get("first"), "last": out.get("last"), "size": out.get("size"),
            "learner": access.learner if access is not None else None})

    def _respond_bytes(self, data: bytes, ctype: str, *, body: bool) -> None:
        """A response made for this request (a personal feed): whole, never cached by
        shared caches, validated by its digest."""
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        common = {"ETag": etag, "Cache-Control": "private, no-cache",
                  "X-Content-Type-Options": "nosniff", **CORS_HEADERS}
        self._outcome["size"] = len(data)
        inm = self.headers.get("If-None-Match")
        if inm is not None and ("*" in inm or etag in {t.strip().removeprefix("W/")
                                                       for t in inm.split(",")}):
            self._head(HTTPStatus.NOT_MODIFIED, common, length=None)
            return
        self._head(HTTPStatus.OK, {**common, "Content-Type": ctype}, length=len(data))
        if body:
            try:
                self.wfile.write(data)
                self._outcome.update(sent=len(data), first=0, last=len(data) - 1)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                self.close_connection = True

    def _respond(self, name: str, fh: Any, st: os.stat_result, meta: dict[str, Any], *,
                 body: bool) -> None:
        size = st.st_size
        etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        ctype = str(meta.get("content_type") or "") or http_content_type(
            content_type_for(name))
        common: dict[str, str] = {
            "ETag": etag, "Last-Modified": last_modified, "Accept-Ranges": "bytes",
            "Cache-Control": str(meta.get("cache_control") or "") or DEFAULT_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff", **CORS_HEADERS,
        }

        if self._not_modified(etag, st.st_mtime):
            self._head(HTTPStatus.NOT_MODIFIED, common, length=None)
            return

        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and if_range and if_range.strip() not in (etag, last_modified):
            wanted = None  # the file changed since the client's partial copy: send it all
        span = parse_range(wanted, size) if wanted else None
        if span == "unsatisfiable":
            self._head(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                       {**common, "Content-Range": f"bytes */{size}"}, length=0)
            return
        if isinstance(span, tuple):
            first, last = span
            self._outcome.update(first=first, last=last)
            self._head(HTTPStatus.PARTIAL_CONTENT,
                       {**common, "Content-Type": ctype,
                        "Content-Range": f"bytes {first}-{last}/{size}"},
                       length=last - first + 1)
        else:
            first, last = 0, size - 1
            self._outcome.update(first=first, last=last)
            self._head(HTTPStatus.OK, {**common, "Content-Type": ctype}, length=size)
        if body and last >= first:
            self._send_bytes(fh, first, last - first + 1)

    def _not_modified(self, etag: str, mtime: float) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            return "*" in tags or etag in tags
        ims = self.headers.get("If-Modified-Since")
        if ims:
            try:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return False
            return int(mtime) <= since
        return False

    def _head(self, status: HTTPStatus, headers: dict[str, str], *,
              length: int | None) -> None:
        self._outcome["status"] = int(status)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_bytes(self, fh: Any, offset: int, count: int) -> None:
        try:
            sent = self.connection.sendfile(fh, offset, count)
            self._outcome["sent"] = sent
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the player went away (seeking, closing): normal
            return
        except OSError as exc:
            log.warning("[serve] could not send %s: %s", self._escaped(self.path), exc)
            self.close_connection = True
            return
        if sent != count:  # the file was cut short in place: end the response visibly
            log.warning("[serve] %s shrank while being sent (%d of %d bytes); files in the "
                        "public folder must be replaced, not rewritten in place",
                        self._escaped(self.path), sent, count)
            self.close_connection = True

    # --- logging ----------------------------------------------------------------------------

    @staticmethod
    def _escaped(text: str) -> str:
        return text.translate(LOG_ESCAPES)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        self._outcome["status"] = int(code)
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("[serve] %s %s", self.address_string(),
                 self._escaped(_redacted(format % args)))


def _redacted(text: str) -> str:
    """A log line with the token of a personal URL blanked out."""
    return TOKEN_IN_PATH.sub("/p/[token]", text)


def make_server(root: Path, host: str = "127.0.0.1", port: int = 8080,
                **limits: Any) -> PublicServer:
    """A server bound (port 0 = any free port) but not yet serving; call `serve_forever`.

    `limits`: max_connections, request_timeout, send_timeout, gate, access_log (see
    PublicServer)."""
    root.mkdir(parents=True, exist_ok=True)
    return PublicServer(root, (host, port), **limits)


def serve(root: Path, host: str, port: int, *, public_base_url: str = "",
          on_ready: Callable[[PublicServer], None] | None = None, **options: Any) -> None:
    """Serve `root` until interrupted (KeyboardInterrupt propagates after a clean shutdown).
    `options`: gate, access_log (see PublicServer)."""
    server = make_server(root, host, port, **options)
    if public_base_url and urlsplit(public_base_url).port not in (None, server.server_port):
        log.warning("[serve] storage.public_base_url is %s but this server listens on port %d; "
                    "feeds will point elsewhere unless a proxy forwards to it",
                    public_base_url, server.server_port)
    if on_ready:
        on_ready(server)
    try:
        server.serve_forever()
    finally:
        server.server_close()
