"""`learncast serve` with real HTTP requests: what podcast apps and web players send."""

from __future__ import annotations

import functools
import http.client
import http.server
import logging
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.serve import PublicServer, make_server, parse_range
from pipeline.storage.local import LocalStorage
from tests.conftest import REPO, TEST_ENV
from tests.storage.s3fixtures import free_port

AUDIO = os.urandom(5000)
VTT = b"WEBVTT\n\n00:00.000 --> 00:01.000\nHello\n"
CONFIG_SECRET = "do-not-serve-this-config"


@dataclass
class Site:
    server: PublicServer
    root: Path

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                ) -> tuple[http.client.HTTPResponse, bytes]:
        host, port = self.server.server_address[:2]
        conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
        conn.putrequest(method, path, skip_accept_encoding=True)  # the path exactly as given
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp, body


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    workspace = tmp_path / "ws"
    (workspace / "config").mkdir(parents=True)
    (workspace / "config" / "learncast.toml").write_text(f"# {CONFIG_SECRET}\n")
    root = workspace / "public"
    storage = LocalStorage(root, "http://localhost:8080")
    src = tmp_path / "src"
    src.mkdir()
    files = {"show/ep/ep-1.mp3": (AUDIO, "audio/mpeg"), "show/ep/ep-1.vtt": (VTT, "text/vtt"),
             "show/ep/ep-1.chapters.json": (b'{"version":"1.2.0","chapters":[]}',
                                            "application/json+chapters")}
    for key, (data, ctype) in files.items():
        (src / "f").write_bytes(data)
        storage.put(src / "f", key, content_type=ctype,
                    cache_control="public, max-age=31536000, immutable", sha256="x" * 64)
    (tmp_path / "outside.txt").write_text(CONFIG_SECRET)
    (root / "show" / "link.txt").symlink_to(tmp_path / "outside.txt")
    server = make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Site(server, root)
    server.shutdown()
    server.server_close()


def test_get_sends_bytes_type_and_validators(site: Site) -> None:
    resp, body = site.request("GET", "/show/ep/ep-1.mp3")
    assert resp.status == 200 and body == AUDIO
    assert resp.headers["Content-Type"] == "audio/mpeg"
    assert resp.headers["Content-Length"] == str(len(AUDIO))
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.headers["ETag"].startswith('"') and resp.headers["Last-Modified"].endswith("GMT")
    assert resp.headers["Access-Control-Allow-Origin"] == "*"  # embeddable (LMS pages)


def test_head_has_the_headers_and_no_body(site: Site) -> None:
    resp, body = site.request("HEAD", "/show/ep/ep-1.mp3")
    assert resp.status == 200 and body == b""
    assert resp.headers["Content-Length"] == str(len(AUDIO))
    assert resp.headers["Content-Type"] == "audio/mpeg"


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=0-1", 0, 1),            # Apple's first probe
    ("bytes=100-199", 100, 199),
    ("bytes=4000-", 4000, 4999),    # open range
    ("bytes=-500", 4500, 4999),     # suffix range
    ("bytes=-999999", 0, 4999),     # suffix longer than the file
    ("bytes=4990-999999", 4990, 4999),
])
def test_byte_ranges_get_206(site: Site, header: str, first: int, last: int) -> None:
    resp, body = site.request("GET", "/show/ep/ep-1.mp3", {"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{len(AUDIO)}"
    assert resp.headers["Content-Length"] == str(last - first + 1)
    assert body == AUDIO[first:last + 1]
    head, empty = site.request("HEAD", "/show/ep/ep-1.mp3", {"Range": header})
    assert head.status == 206 and empty == b""


@pytest.mark.parametrize("header", ["bytes=5000-", "bytes=6000-7000", "bytes=-0"])
def test_unsatisfiable_range_is_416(site: Site, header: str) -> None:
    resp, body = site.request("GET", "/show/ep/ep-1.mp3", {"Range": header})
    assert resp.status == 416 and body == b""
    assert resp.headers["Content-Range"] == f"bytes */{len(AUDIO)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-1", "bytes=9-2", "bytes=-"])
def test_unsupported_or_malformed_ranges_get_the_whole_file(site: Site, header: str) -> None:
    resp, body = site.request("GET", "/show/ep/ep-1.mp3", {"Range": header})
    assert resp.status == 200 and body == AUDIO


def test_conditional_requests(site: Site) -> None:
    first, _ = site.request("GET", "/show/ep/ep-1.mp3")
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    resp, body = site.request("GET", "/show/ep/ep-1.mp3", {"If-None-Match": etag})
    assert resp.status == 304 and body == b"" and resp.headers["ETag"] == etag
    resp, _ = site.request("GET", "/show/ep/ep-1.mp3", {"If-Modified-Since": modified})
    assert resp.status == 304
    resp, _ = site.request("GET", "/show/ep/ep-1.mp3", {"If-None-Match": '"other"'})
    assert resp.status == 200
    # If-Range: resume only when the client's copy is still current.
    resp, body = site.request("GET", "/show/ep/ep-1.mp3",
                              {"Range": "bytes=10-19", "If-Range": etag})
    assert resp.status == 206 and body == AUDIO[10:20]
    resp, body = site.request("GET", "/show/ep/ep-1.mp3",
                              {"Range": "bytes=10-19", "If-Range": '"stale"'})
    assert resp.status == 200 and body == AUDIO


@pytest.mark.parametrize("path", ["/show/ep/ep-1.vtt", "/show/ep/ep-1.chapters.json"])
def test_transcripts_and_chapters_allow_cross_origin(site: Site, path: str) -> None:
    resp, _ = site.request("GET", path, {"Origin": "https://player.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Range" in resp.headers["Access-Control-Expose-Headers"]
    pre, _ = site.request("OPTIONS", path, {"Origin": "https://player.example",
                                            "Access-Control-Request-Method": "GET",
                                            "Access-Control-Request-Headers": "range"})
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "Range" in pre.headers["Access-Control-Allow-Headers"]


def test_types_of_transcripts_and_chapters(site: Site) -> None:
    resp, body = site.request("GET", "/show/ep/ep-1.vtt")
    assert resp.headers["Content-Type"] == "text/vtt" and body == VTT
    resp, _ = site.request("GET", "/show/ep/ep-1.chapters.json")
    assert resp.headers["Content-Type"] == "application/json+chapters"


@pytest.mark.parametrize("path", ["/", "/show", "/show/", "/show/ep/", "/missing.mp3"])
def test_no_directory_listing(site: Site, path: str) -> None:
    resp, body = site.request("GET", path)
    assert resp.status == 404
    assert b"ep-1" not in body


@pytest.mark.parametrize("path", [
    "/../config/learncast.toml",
    "/show/../../config/learncast.toml",
    "/%2e%2e/config/learncast.toml",
    "/%2E%2E%2Fconfig%2Flearncast.toml",
    "/..%2fconfig%2flearncast.toml",
    "/show/%2e%2e/%2e%2e/config/learncast.toml",
    "/%252e%252e/config/learncast.toml",           # double-encoded
    "/..%5cconfig%5clearncast.toml",               # backslashes
    "/%c0%ae%c0%ae/config/learncast.toml",         # overlong UTF-8 dots
    "/show/ep/ep-1.mp3%00.txt",                    # NUL byte
    "//../config/learncast.toml",
    "/show/link.txt",                              # a symlink out of the folder
    "/show/ep/ep-1.mp3.learncast-meta.json",       # our metadata sidecar
    "/show/ep/.hidden",
    "http://evil.example/../config/learncast.toml",
])
def test_no_path_traversal(site: Site, path: str) -> None:
    resp, body = site.request("GET", path)
    assert resp.status in (403, 404)
    assert CONFIG_SECRET.encode() not in body and b"sha256" not in body


def test_writes_are_not_allowed(site: Site) -> None:
    for method in ("PUT", "POST", "DELETE"):
        resp, _ = site.request(method, "/show/ep/ep-1.mp3")
        assert resp.status == 405 and "GET" in resp.headers["Allow"]
    assert (site.root / "show" / "ep" / "ep-1.mp3").read_bytes() == AUDIO


def test_files_without_metadata_get_a_type_from_their_name(site: Site) -> None:
    (site.root / "show" / "notes.txt").write_text("Café\n", encoding="utf-8")
    resp, _ = site.request("GET", "/show/notes.txt")
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    (site.root / "show" / "podcast.xml").write_text("<rss/>")
    resp, _ = site.request("HEAD", "/show/podcast.xml")
    assert resp.headers["Content-Type"] == "application/rss+xml"


def test_keep_alive_and_concurrent_ranges(site: Site) -> None:
    """Apps open several connections and reuse them while seeking."""
    host, port = site.server.server_address[:2]
    errors: list[str] = []

    def seek(worker: int) -> None:
        conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
        for i in range(5):  # one connection, five requests
            first = (worker * 500 + i * 37) % 4900
            conn.request("GET", "/show/ep/ep-1.mp3", headers={"Range": f"bytes={first}-"
                                                                       f"{first + 99}"})
            resp = conn.getresponse()
            if resp.status != 206 or resp.read() != AUDIO[first:first + 100]:
                errors.append(f"worker {worker} request {i}: {resp.status}")
        conn.close()

    threads = [threading.Thread(target=seek, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_parse_range_edges() -> None:
    assert parse_range("bytes=0-0", 1) == (0, 0)
    assert parse_range("bytes=0-", 0) == "unsatisfiable"
    assert parse_range("bytes=-1", 0) == "unsatisfiable"
    assert parse_range("bytes=1-2, 3-4", 10) is None


def test_cli_serve(workspace_dir: Path, tmp_path: Path) -> None:
    """The real command: binds, prints where, serves the workspace's public folder."""
    storage = LocalStorage(workspace_dir / "public", "http://localhost:8080")
    (tmp_path / "a").write_bytes(AUDIO)
    storage.put(tmp_path / "a", "show/a.mp3", content_type="audio/mpeg",
                cache_control="max-age=1", sha256="y" * 64)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--workspace", str(workspace_dir),
                             "serve", "--port", str(port)], cwd=REPO,
                            env={**os.environ, **TEST_ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/show/a.mp3", headers={"Range": "bytes=-10"})
        resp = conn.getresponse()
        assert resp.status == 206 and resp.read() == AUDIO[-10:]
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_serve_refuses_the_s3_backend(workspace_dir: Path) -> None:
    from tests.conftest import learncast

    result = learncast(workspace_dir, "serve", env={"LEARNCAST_STORAGE__BACKEND": "s3",
                                                    "LEARNCAST_STORAGE__BUCKET": "b"})
    assert result.returncode == 2
    assert "only serves the local backend" in result.stderr


def test_cli_serve_port_in_use(workspace_dir: Path) -> None:
    from tests.conftest import learncast

    server = make_server(workspace_dir / "public", "127.0.0.1", 0)
    try:
        result = learncast(workspace_dir, "serve", "--port", str(server.server_port),
                           timeout=30)
        assert result.returncode == 2 and "--port" in result.stderr
    finally:
        server.server_close()


# --- robustness: hostile or broken clients (issue 13, items 16 and 17) ---------------------


def _cli_serve(workspace: Path, port: int, *, nofile: int | None = None) -> subprocess.Popen[str]:
    """`learncast serve` in a child process (optionally with a low open-files limit)."""

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--workspace", str(workspace),
                             "serve", "--port", str(port)], cwd=REPO,
                            env={**os.environ, **TEST_ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert f"http://127.0.0.1:{port}" in line, line + (proc.stderr.read() if proc.stderr else "")
    return proc


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Read up to `count` HTTP responses from one connection (fewer if it closes)."""
    stream = sock.makefile("rb")
    out = []
    for _ in range(count):
        status_line = stream.readline()
        if not status_line:
            break
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = stream.read(int(headers.get("content-length", "0")))
        out.append((status, headers, body))
    return out


def test_idle_connections_cannot_starve_other_clients(workspace_dir: Path) -> None:
    """300 idle connections against a server allowed 256 open files: it neither spins nor
    stops answering; a podcast app connecting meanwhile gets its file."""
    storage = LocalStorage(workspace_dir / "public", "http://localhost:8080")
    src = workspace_dir / "a.mp3"
    src.write_bytes(AUDIO)
    storage.put(src, "show/a.mp3", content_type="audio/mpeg", cache_control="max-age=1",
                sha256="y" * 64)
    port = free_port()
    proc = _cli_serve(workspace_dir, port, nofile=256)
    idle: list[socket.socket] = []
    try:
        for _ in range(300):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break  # refused or reset: the server chose not to keep it, fine
        time.sleep(0.5)
        cpu = _cpu_seconds(proc.pid)
        time.sleep(2.0)
        spent = _cpu_seconds(proc.pid) - cpu
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/show/a.mp3")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == AUDIO
        conn.close()
        assert spent < 0.4, f"the server used {spent:.2f} s of CPU in 2 s while idle (spinning)"
    finally:
        for s in idle:
            s.close()
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def strict_site(tmp_path: Path) -> Iterator[Site]:
    """A server with short timeouts, as a test can wait for them."""
    root = tmp_path / "public"
    (root / "show").mkdir(parents=True)
    (root / "show" / "a.mp3").write_bytes(AUDIO)
    server = make_server(root, "127.0.0.1", 0, request_timeout=0.5, send_timeout=2.0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Site(server, root)
    server.shutdown()
    server.server_close()


def _closed_by_server(sock: socket.socket, *, trickle: bytes = b"") -> bool:
    """Whether the server closes `sock` within 10 s (sending `trickle` a byte at a time)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + 10
    sent = 0
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            pass
        except OSError:
            return True
        if sent < len(trickle):
            try:
                sock.send(trickle[sent:sent + 1])
            except OSError:
                return True
            sent += 1
    return False


def test_idle_and_slow_clients_are_disconnected(strict_site: Site) -> None:
    address = strict_site.server.server_address[:2]
    idle = socket.create_connection(address)
    assert _closed_by_server(idle), "an idle connection is never closed"
    slow = socket.create_connection(address)
    head = b"GET /show/a.mp3 HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(60))
    assert _closed_by_server(slow, trickle=head), "a request head sent byte by byte is waited for"
    body = socket.create_connection(address)
    body.sendall(b"GET /show/a.mp3 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    assert _closed_by_server(body, trickle=b"y" * 100), "a body sent byte by byte is waited for"
    kept = socket.create_connection(address)  # keep-alive between requests still works
    kept.sendall(b"GET /show/a.mp3 HTTP/1.1\r\nHost: x\r\n\r\n")
    kept.sendall(b"GET /show/a.mp3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [(s, b) for s, _, b in _responses(kept, 3)] == [(200, AUDIO), (200, AUDIO)]
    for s in (idle, slow, body, kept):
        s.close()


@pytest.mark.parametrize(("header", "status", "expected"), [
    ("bytes=" + "9" * 4300 + "-", 416, b""),
    ("bytes=" + "9" * 5000 + "-" + "9" * 5001, 416, b""),
    ("bytes=0-" + "9" * 4300, 206, AUDIO),
    ("bytes=-" + "9" * 4300, 206, AUDIO),
    ("bytes=" + "0" * 4300 + "1-" + "0" * 4300 + "9", 206, AUDIO[1:10]),
    ("bytes=1-" + "0" * 4400, 200, AUDIO),   # last < first: malformed, the whole file
])
def test_ranges_with_thousands_of_digits(site: Site, header: str, status: int,
                                         expected: bytes) -> None:
    resp, body = site.request("GET", "/show/ep/ep-1.mp3", {"Range": header})
    assert resp.status == status and body == expected


def test_a_request_body_is_never_read_as_the_next_request(site: Site) -> None:
    address = site.server.server_address[:2]
    smuggled = b"GET /show/ep/ep-1.mp3 HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /show/ep/ep-1.vtt HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled
                     + b"GET /show/ep/ep-1.chapters.json HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: close\r\n\r\n")
        answers = _responses(sock, 4)
    assert [(s, h["content-type"]) for s, h, _ in answers] == [
        (200, "text/vtt"), (200, "application/json+chapters")]
    for head, status in ((b"Transfer-Encoding: chunked\r\n", 400),
                         (b"Content-Length: 99999999\r\n", 413),
                         (b"Content-Length: 12, 13\r\n", 400)):
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"GET /show/ep/ep-1.vtt HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n"
                         + smuggled)
            answers = _responses(sock, 3)
        assert [s for s, _, _ in answers] == [status], head


def test_control_characters_are_escaped_in_the_log(site: Site,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.serve")
    with socket.create_connection(site.server.server_address[:2], timeout=10) as sock:
        sock.sendall(b"GET /\x1b[2J\x1b]0;pwned\x07\x00x HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        _responses(sock, 1)
        time.sleep(0.2)
    assert "[2J" in caplog.text  # the request was logged...
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", caplog.text)  # ...with no raw controls
    assert "\\x1b[2J" in caplog.text


#: Another process publishing a feed again and again, atomically (temp file, then rename).
PUBLISHER = """
import os, sys
feed, versions = sys.argv[1], sys.argv[2:]
k = 0
while True:
    tmp = feed + ".tmp"
    with open(versions[k % len(versions)], "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read())
    os.replace(tmp, feed)
    k += 1
"""


def test_responses_stay_whole_while_a_feed_is_replaced(site: Site, tmp_path: Path) -> None:
    """A feed replaced atomically by another process (as publish does) while 12 clients fetch
    it, whole and by ranges: every body matches its Content-Length and one version's bytes."""
    versions = [os.urandom(n) for n in (20_000, 35_000, 50_000)]
    sources = []
    for k, data in enumerate(versions):
        sources.append(tmp_path / f"v{k}")
        sources[-1].write_bytes(data)
    feed = site.root / "show" / "podcast.xml"
    feed.write_bytes(versions[0])
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(feed),
                                  *map(str, sources)])
    problems: list[str] = []
    done: list[int] = []
    host, port = site.server.server_address[:2]

    def fetch(worker: int) -> None:
        conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
        for i in range(25):
            ranged = (worker + i) % 3 == 0
            try:
                conn.request("GET", "/show/podcast.xml",
                             headers={"Range": "bytes=100-19999"} if ranged else {})
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                problems.append(f"worker {worker} request {i}: {type(exc).__name__} {exc}")
                conn.close()
                conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
                continue
            if len(body) != int(resp.headers["Content-Length"]):
                problems.append(f"{len(body)} bytes for Content-Length "
                                f"{resp.headers['Content-Length']}")
            elif ranged and not any(body == v[100:20000] for v in versions):
                problems.append(f"range of {len(body)} bytes matches no version")
            elif not ranged and body not in versions:
                problems.append(f"body of {len(body)} bytes matches no version")
            done.append(1)
        conn.close()

    clients = [threading.Thread(target=fetch, args=(w,)) for w in range(12)]
    try:
        for t in clients:
            t.start()
        for t in clients:
            t.join()
    finally:
        publisher.kill()
        publisher.wait()
    assert problems == [], f"{len(problems)} of {12 * 25}: {problems[:5]}"
    assert len(done) == 12 * 25


#: Another process swapping `real` (a folder) for a symlink to `outside` and back, forever.
SWAPPER = """
import os, sys
real, aside, outside = sys.argv[1:4]
while True:
    os.rename(real, aside)
    os.symlink(outside, real)
    os.unlink(real)
    os.rename(aside, real)
"""


def test_a_symlink_swapped_inside_public_never_serves_outside_files(site: Site,
                                                                    tmp_path: Path) -> None:
    """`show/real`, a folder, is swapped for a symlink to a folder outside public/ and back
    by another process while 8 clients fetch a file through it 150 times each: nothing from
    outside, no broken response."""
    real = site.root / "show" / "real"
    real.mkdir()
    (real / "notes.txt").write_text("public notes")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "notes.txt").write_text(CONFIG_SECRET)
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(real),
                                str(site.root / "show" / ".aside"), str(outside)])
    problems: list[str] = []
    statuses: list[int] = []

    def fetch() -> None:
        for _ in range(150):
            try:
                resp, body = site.request("GET", "/show/real/notes.txt")
            except (OSError, http.client.HTTPException) as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            statuses.append(resp.status)
            if resp.status == 200 and body != b"public notes":  # the secret, maybe cut short
                problems.append(f"served {body!r}")

    clients = [threading.Thread(target=fetch) for _ in range(8)]
    try:
        for t in clients:
            t.start()
        for t in clients:
            t.join()
    finally:
        swapper.kill()
        swapper.wait()
    assert problems == [], f"{len(problems)} of 1200: {problems[:5]}"
    assert set(statuses) <= {200, 404}


@pytest.mark.parametrize("path", ["/show/fifo", "/show/ep/dir-link/ep-1.mp3",
                                  "/show/ep/file-link.mp3"])
def test_special_files_and_symlinks_are_not_served(site: Site, path: str) -> None:
    """Symlinks are never followed, even to files inside public/ (the local backend writes
    none); a FIFO would block the server's thread forever if opened."""
    os.mkfifo(site.root / "show" / "fifo")
    (site.root / "show" / "ep" / "dir-link").symlink_to(site.root / "show" / "ep")
    (site.root / "show" / "ep" / "file-link.mp3").symlink_to("ep-1.mp3")
    resp, _ = site.request("GET", path)
    assert resp.status == 404


@pytest.mark.parametrize("path", ["/show/ep/ep-1.mp3", "/show/ep/ep-1.vtt"])
def test_media_and_captions_are_embeddable_from_other_origins(site: Site, path: str) -> None:
    """An LMS page on another origin plays the MP4 (`<video crossorigin>`) with its track."""
    origin = {"Origin": "https://lms.example"}
    resp, _ = site.request("GET", path, {**origin, "Range": "bytes=0-99"})
    assert resp.status == 206 and resp.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {h.strip() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Content-Length", "Content-Range", "Accept-Ranges"} <= exposed
    pre, _ = site.request("OPTIONS", path, {**origin, "Access-Control-Request-Method": "GET",
                                            "Access-Control-Request-Headers": "range"})
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "Range" in pre.headers["Access-Control-Allow-Headers"]
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]
    missing, _ = site.request("OPTIONS", "/show/ep/nothing.mp4", origin)
    assert missing.status == 404


#: An LMS lesson page on another origin, embedding the episode as a learner sees it.
LESSON = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Lesson</title></head><body>
<video id="v" controls muted preload="auto" crossorigin="anonymous" src="{base}/show/ep/ep.mp4">
<track id="t" default kind="captions" srclang="en" label="English" src="{base}/show/ep/ep.vtt">
</video></body></html>
"""


def test_an_lms_page_on_another_origin_plays_the_video_with_captions(
        workspace_dir: Path, tmp_path: Path, make_media: Any, browser: Any) -> None:
    """Chromium loads a lesson page from one origin; the MP4 and its WebVTT track come from
    `learncast serve` on another (`<video crossorigin>`): the video plays, the cues load."""
    storage = LocalStorage(workspace_dir / "public", "http://localhost:8080")
    video = make_media(tmp_path / "ep.mp4", "-f", "lavfi", "-i",
                       "testsrc=size=320x240:rate=25:duration=4", "-f", "lavfi", "-i",
                       "sine=frequency=440:duration=4", "-c:v", "libx264", "-pix_fmt",
                       "yuv420p", "-c:a", "aac", "-shortest", "-movflags", "+faststart")
    captions = tmp_path / "ep.vtt"
    captions.write_text("WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nWelcome to the course.\n\n"
                        "00:00:02.200 --> 00:00:03.800\nCaptions from another origin.\n")
    storage.put(video, "show/ep/ep.mp4", content_type="video/mp4",
                cache_control="max-age=60", sha256="v" * 64)
    storage.put(captions, "show/ep/ep.vtt", content_type="text/vtt",
                cache_control="max-age=60", sha256="c" * 64)
    port = free_port()
    proc = _cli_serve(workspace_dir, port)
    lms = tmp_path / "lms"
    lms.mkdir()
    (lms / "lesson.html").write_text(LESSON.format(base=f"http://127.0.0.1:{port}"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(lms))
    page_server = http.server.ThreadingHTTPServer(("localhost", 0), handler)
    threading.Thread(target=page_server.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://localhost:{page_server.server_port}/lesson.html")
        page.wait_for_function(
            "() => { const v = document.getElementById('v'); "
            "return v.error !== null || (v.readyState >= 2 && "
            "document.getElementById('t').readyState >= 2); }", timeout=30_000)
        state = page.evaluate(
            "() => { const v = document.getElementById('v'); const t = v.textTracks[0]; "
            "return {error: v.error && v.error.code, ready: v.readyState, "
            "duration: v.duration, track: document.getElementById('t').readyState, "
            "cues: t.cues ? Array.from(t.cues).map(c => c.text) : null}; }")
        assert state["error"] is None, f"the video failed to load cross-origin: {state}"
        assert state["track"] == 2 and state["cues"] == [
            "Welcome to the course.", "Captions from another origin."], state
        assert 3.5 < state["duration"] < 4.5
        page.evaluate("() => { const v = document.getElementById('v'); v.currentTime = 2.5; "
                      "return v.play(); }")
        page.wait_for_function("() => { const c = document.getElementById('v').textTracks[0]"
                               ".activeCues; return c && c.length > 0 && c[0].text.includes("
                               "'another origin'); }", timeout=20_000)
    finally:
        context.close()
        page_server.shutdown()
        proc.terminate()
        proc.wait(timeout=10)
