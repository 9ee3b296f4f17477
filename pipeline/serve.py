"""`learncast serve`: the local storage backend's folder over HTTP, as podcast apps need it.

Podcast apps (Apple's above all) seek in enclosures with byte ranges and refuse servers that
ignore them, so this serves `Range` (including suffix `-500` and open `500-` ranges) with 206,
`HEAD`, validators (`ETag`, `Last-Modified`, conditional requests → 304) and the content type
recorded at upload. Web players fetch transcripts and chapters from other origins, so those
carry CORS headers. Nothing else is exposed: no directory listings, no metadata sidecars, no
hidden files, and no path — however it is encoded — that leaves the public folder.

It is the standard library's threaded HTTP server: fine for a team's intranet or a laptop
demo. Large audiences belong on object storage and a CDN (the s3 backend).
"""

from __future__ import annotations

import email.utils
import logging
import re
import socket
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pipeline.storage.base import content_type_for, http_content_type
from pipeline.storage.local import is_internal, read_meta

log = logging.getLogger(__name__)

#: Transcripts and chapters: web players load them cross-origin.
CORS_TYPES = ("text/vtt", "application/x-subrip", "text/plain", "text/html",
              "application/json", "application/json+chapters")
DEFAULT_CACHE_CONTROL = "no-cache"
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """One byte range → (first, last) inclusive; "unsatisfiable"; or None to send it all.

    Several ranges or a malformed header are answered with the whole file, which RFC 9110
    allows; a range that starts beyond the end is unsatisfiable (416).
    """
    m = RANGE_RE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first_s, last_s = m.groups()
    if not first_s:  # suffix range: the last N bytes
        n = int(last_s)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # malformed
    if first >= size:
        return "unsatisfiable"
    return first, min(int(last_s), size - 1) if last_s else size - 1


class PublicServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, address: tuple[str, int]) -> None:
        self.root = root.resolve()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, PublicHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"


class PublicHandler(BaseHTTPRequestHandler):
    server: PublicServer
    server_version = "learncast"
    protocol_version = "HTTP/1.1"

    # --- resolving --------------------------------------------------------------------------

    def _resolve(self) -> tuple[Path, Path] | None:
        """(path as requested, real file) for a public file, or None (→ 404)."""
        raw = urlsplit(self.path).path
        if not raw.startswith("/"):
            return None
        decoded = unquote(raw, errors="strict") if "%" in raw else raw
        if "\x00" in decoded or "\\" in decoded:
            return None
        parts = [p for p in decoded.split("/") if p]
        # `..` and `.` segments, hidden files, sidecars and half-written temp files: never.
        if not parts or any(p.startswith(".") or is_internal(p) for p in parts):
            return None
        root = self.server.root
        requested = root.joinpath(*parts)
        try:
            real = requested.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(root) or not real.is_file():
            return None  # a symlink out of the public folder, or a folder: no listings
        return requested, real

    # --- methods ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_OPTIONS(self) -> None:
        """CORS preflight (a player asking whether it may send `Range`)."""
        found = self._resolve_safely()
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Allow", "GET, HEAD, OPTIONS")
        if found and self._cors(found[0]):
            self._cors_headers()
            self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Range, If-None-Match, "
                             "If-Modified-Since, If-Range")
            self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD, OPTIONS")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    # --- serving ----------------------------------------------------------------------------

    def _resolve_safely(self) -> tuple[Path, Path] | None:
        try:
            return self._resolve()
        except (UnicodeDecodeError, ValueError):
            return None

    def _cors(self, requested: Path) -> bool:
        ctype = read_meta(requested).get("content_type") or content_type_for(requested.name)
        return ctype.split(";")[0].strip() in CORS_TYPES

    def _cors_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers",
                         "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified")

    def _serve(self, *, body: bool) -> None:
        found = self._resolve_safely()
        if found is None:
            self.send_error(HTTPStatus.NOT_FOUND, "Not Found")
            return
        requested, real = found
        meta = read_meta(requested)
        try:
            st = real.stat()
        except OSError:  # deleted (unpublished) between the lookup and now
            self.send_error(HTTPStatus.NOT_FOUND, "Not Found")
            return
        size = st.st_size
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        ctype = meta.get("content_type") or http_content_type(content_type_for(requested.name))
        common: dict[str, str] = {
            "ETag": etag, "Last-Modified": last_modified, "Accept-Ranges": "bytes",
            "Cache-Control": meta.get("cache_control") or DEFAULT_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
        }

        if self._not_modified(etag, st.st_mtime):
            self._head(HTTPStatus.NOT_MODIFIED, common, cors=ctype, length=None)
            return

        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and if_range and if_range.strip() not in (etag, last_modified):
            wanted = None  # the file changed since the client's partial copy: send it all
        span = parse_range(wanted, size) if wanted else None
        if span == "unsatisfiable":
            self._head(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                       {**common, "Content-Range": f"bytes */{size}"}, cors=ctype, length=0)
            return
        if isinstance(span, tuple):
            first, last = span
            self._head(HTTPStatus.PARTIAL_CONTENT,
                       {**common, "Content-Type": ctype,
                        "Content-Range": f"bytes {first}-{last}/{size}"},
                       cors=ctype, length=last - first + 1)
        else:
            first, last = 0, size - 1
            self._head(HTTPStatus.OK, {**common, "Content-Type": ctype}, cors=ctype,
                       length=size)
        if body and last >= first:
            self._send_bytes(real, first, last - first + 1)

    def _not_modified(self, etag: str, mtime: float) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            return "*" in tags or etag in tags
        ims = self.headers.get("If-Modified-Since")
        if ims:
            try:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError, IndexError):
                return False
            return int(mtime) <= since
        return False

    def _head(self, status: HTTPStatus, headers: dict[str, str], *, cors: str,
              length: int | None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if cors.split(";")[0].strip() in CORS_TYPES:
            self._cors_headers()
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_bytes(self, path: Path, offset: int, count: int) -> None:
        try:
            with open(path, "rb") as fh:
                self.connection.sendfile(fh, offset, count)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the player went away (seeking, closing): normal
        except OSError as exc:  # the file went away after the headers: end the response
            log.warning("[serve] could not send %s: %s", path.name, exc)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.info("[serve] %s %s", self.address_string(), format % args)


def make_server(root: Path, host: str = "127.0.0.1", port: int = 8080) -> PublicServer:
    """A server bound (port 0 = any free port) but not yet serving; call `serve_forever`."""
    root.mkdir(parents=True, exist_ok=True)
    return PublicServer(root, (host, port))


def serve(root: Path, host: str, port: int, *, public_base_url: str = "",
          on_ready: Callable[[PublicServer], None] | None = None) -> None:
    """Serve `root` until interrupted (KeyboardInterrupt propagates after a clean shutdown)."""
    server = make_server(root, host, port)
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
