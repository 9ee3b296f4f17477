"""`learncast serve` with real HTTP requests: what podcast apps and web players send."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
    assert "Access-Control-Allow-Origin" not in resp.headers  # media needs no CORS


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
