"""A real S3 HTTP server (moto) for the storage tests, and a proxy that injects faults.

The server runs in-process on 127.0.0.1 at a free port for the whole session; each test gets a
clean slate through moto's reset API. boto3 talks to it over HTTP with SigV4, exactly as it
would talk to MinIO or AWS. Credentials reach boto3 only through its standard chain (here:
environment variables), never through Learncast's config.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from pipeline.config import StorageSettings
from pipeline.storage.s3 import S3Storage

ACCESS_KEY = "AKIALEARNCASTTEST001"
SECRET_KEY = "learncast-test-secret-9f8e7d6c5b4a"  # the tests check it never leaks
BUCKET = "learncast-test"
REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Credentials through boto3's standard chain, isolated from the machine's own."""
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
                "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def s3_bucket(moto_server: str, aws_env: dict[str, str]) -> str:
    """A fresh moto (POST /moto-api/reset) with one empty bucket."""
    req = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    raw_client(moto_server).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return BUCKET


def raw_client(endpoint: str) -> Any:
    """A plain boto3 client for checking what the server holds (not the code under test)."""
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION)


def s3_settings(endpoint: str, **changes: Any) -> StorageSettings:
    values: dict[str, Any] = {"backend": "s3", "bucket": BUCKET, "endpoint_url": endpoint,
                              "region": REGION, "addressing_style": "path",
                              "prefix": "podcasts", "max_attempts": 2, "timeout_s": 10}
    return StorageSettings(**{**values, **changes})


@pytest.fixture
def s3_storage(moto_server: str, s3_bucket: str) -> S3Storage:
    return S3Storage.from_settings(s3_settings(moto_server))


@pytest.fixture
def s3_workspace_env(moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
                     ) -> dict[str, str]:
    """LEARNCAST_STORAGE__* settings that point a workspace at the moto bucket."""
    env = {"LEARNCAST_STORAGE__BACKEND": "s3", "LEARNCAST_STORAGE__BUCKET": s3_bucket,
           "LEARNCAST_STORAGE__ENDPOINT_URL": moto_server,
           "LEARNCAST_STORAGE__REGION": REGION,
           "LEARNCAST_STORAGE__ADDRESSING_STYLE": "path",
           "LEARNCAST_STORAGE__PREFIX": "podcasts",
           "LEARNCAST_STORAGE__MAX_ATTEMPTS": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


# --- fault injection -----------------------------------------------------------------------

#: rule(method, path, n) → None to forward, or "drop" / "500" / "503" / "403" to fail request n
#: (1-based), or "slow" to answer it only after SLOW_S seconds (past a client's read timeout)
FaultRule = Callable[[str, str, int], str | None]

SLOW_S = 4.0

ERROR_BODIES = {
    "503": (503, b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable"
                 b"</Code><Message>Please reduce your request rate.</Message></Error>"),
    "500": (500, b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code>"
                 b"<Message>We encountered an internal error. Please try again.</Message>"
                 b"</Error>"),
    "403": (403, b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                 b"<Message>Access Denied</Message></Error>"),
}


class FaultProxy:
    """A small threaded HTTP proxy in front of moto that fails chosen requests.

    It forwards requests byte for byte (the SigV4 signature stays valid) and records each
    (method, path, outcome), so tests can count what was actually sent.
    """

    def __init__(self, upstream: str, rule: FaultRule) -> None:
        self.upstream = urlsplit(upstream)
        self.rule = rule
        self.log: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                with proxy._lock:
                    n = len(proxy.log) + 1
                    fault = proxy.rule(self.command, self.path, n)
                    proxy.log.append((self.command, self.path, fault or "forwarded"))
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "slow":
                    time.sleep(SLOW_S)
                    fault = None
                if fault:
                    status, payload = ERROR_BODIES[fault]
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() != "transfer-encoding"}
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream.hostname,
                                                  proxy.upstream.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    payload = resp.read()
                    self.send_response(resp.status)
                    for key, value in resp.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection",
                                               "content-length", "server", "date"):
                            self.send_header(key, value)
                    length = resp.getheader("Content-Length") if self.command == "HEAD" \
                        else str(len(payload))
                    self.send_header("Content-Length", length or "0")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, method: str | None = None, outcome: str | None = None) -> int:
        return sum(1 for m, _, o in self.log
                   if (method is None or m == method) and (outcome is None or o == outcome))


def fail_first(n: int, how: str) -> FaultRule:
    """Fail the first `n` requests (whatever they are), forward the rest."""
    return lambda _method, _path, count: how if count <= n else None
