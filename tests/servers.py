"""Real servers for the distributed tests: PostgreSQL and Redis from Debian's packages.

Each runs as a child of the test session on 127.0.0.1 at a free port, with its data in a
temporary folder, and can be stopped and started again mid-test (a restart, an outage).
PostgreSQL refuses to run as root: as root (CI), the server runs as an unprivileged user
created for it (`lcpg`). Missing binaries are a failure that says what to install, not a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.s3fixtures import free_port


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = Path(os.environ.get("LEARNCAST_PG_BIN") or _pg_bin())
REDIS = os.environ.get("LEARNCAST_REDIS_SERVER", "/usr/bin/redis-server")
PG_USER = "lcpg"


def _need(path: Path | str, package: str) -> None:
    if not Path(path).exists():
        pytest.fail(f"{path} not found: install Debian's {package} package "
                    f"(apt-get install -y {package}; scripts/ensure-servers.sh does it)")


def _as_pg_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", PG_USER, "--", *args]


class Postgres:
    """A throwaway PostgreSQL cluster; `url(db)` for a database in it."""

    def __init__(self) -> None:
        _need(PG_BIN / "initdb", "postgresql")
        if os.geteuid() == 0 and subprocess.run(["id", "-u", PG_USER],
                                                capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", PG_USER], check=True)
        self.root = Path(tempfile.mkdtemp(prefix="learncast-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, PG_USER)
        subprocess.run(_as_pg_user([str(PG_BIN / "initdb"), "-D", str(self.data), "-U",
                                    "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True)
        self.start()

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        subprocess.run(_as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts,
                                    "-l", str(self.root / "log.txt"), "-w", "-t", "60",
                                    "start"]), check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(_as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                    "-w", "stop"]), check=True, capture_output=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"lc_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    """A Redis server that persists every write (AOF, fsync always), as a broker that must
    lose nothing over a restart should be configured."""

    def __init__(self) -> None:
        _need(REDIS, "redis-server")
        self.root = Path(tempfile.mkdtemp(prefix="learncast-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--protected-mode", "no", "--logfile", str(self.root / "log.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start; see {self.root / 'log.txt'}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: Redis flushes the AOF and exits
            self.proc.wait(timeout=30)
            self.proc = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    yield server
    server.close()


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A fresh, empty database in the session's PostgreSQL."""
    return postgres.create_database()


@pytest.fixture
def redis_server() -> Iterator[Redis]:
    server = Redis()
    yield server
    server.close()
