"""A small Learncast cluster for the distributed tests: real servers, real processes.

Redis (broker), PostgreSQL (state) and the moto S3 server (storage) from the test fixtures;
one coordinator workspace that sees the inbox; worker workspaces that share nothing with it
or with each other (each its own folder, config and scratch space). Every Learncast process is
the real CLI in a child process; a worker runs in its own session, so `kill -9` of the
session is the whole machine dying.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.state import StateDB
from pipeline.workspace import init_workspace
from tests.conftest import REPO, TEST_ENV
from tests.servers import Postgres, Redis
from tests.storage.s3fixtures import BUCKET, REGION

#: Quick leases and polling, so a dead worker is noticed in seconds, not minutes.
QUEUE_ENV = {
    "LEARNCAST_QUEUE__LEASE_SECONDS": "8",
    "LEARNCAST_QUEUE__POLL_SECONDS": "0.3",
    "LEARNCAST_STATE__RETRY_SECONDS": "60",
    "LEARNCAST_REVIEW__VIDEO": "immediate",
}


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    redis: Redis
    postgres: Postgres
    db_url: str
    coordinator: Path
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    def workspace(self, name: str) -> Path:
        root = self.root / name
        init_workspace(root)
        return root

    def start_worker(self, name: str, *args: str, env: dict[str, str] | None = None,
                     ) -> subprocess.Popen[bytes]:
        ws = self.root / name
        if not ws.exists():
            self.workspace(name)
        log = self.root / f"{name}.log"
        self.logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--workspace", str(ws), "worker", *args],
            cwd=REPO, env={**self.env, **(env or {})}, stdout=log.open("ab"),
            stderr=subprocess.STDOUT, start_new_session=True)
        self.workers[name] = proc
        return proc

    def kill_worker(self, name: str) -> None:
        """kill -9 the worker's whole process group (the machine is gone)."""
        proc = self.workers[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        log = self.root / "run.log"
        self.logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--workspace", str(self.coordinator), *args],
            cwd=REPO, env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
            stderr=log.open("ab"), text=True, start_new_session=True)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "--workspace", str(self.coordinator), *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)

    def store(self) -> StateDB:
        return StateDB(self.db_url, retry_seconds=60)

    def finish(self, run: subprocess.Popen[str], timeout: float = 400) -> str:
        """`run`'s output once it ends; if it does not, the logs and every episode's stages,
        so a hang says where it stuck (well before pytest's own timeout hides them)."""
        try:
            out, _ = run.communicate(timeout=timeout)
            return out
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            out, _ = run.communicate()
        db = self.store()
        try:
            stages = {j.id: (j.status, {n: (r["status"], r.get("attempts"), r.get("owner"))
                                        for n, r in db.stage_status(j.id).items()})
                      for j in db.all()}
        finally:
            db.close()
        raise AssertionError(f"`learncast {run.args[-1]}` did not end in {timeout:.0f} s\n"
                             f"{out}\nepisodes: {stages}\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-6000:]
                         for p in dict.fromkeys(self.logs) if p.exists())

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for(what: str, check: Callable[[], bool], cluster: Cluster,
             timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{cluster.log_tail()}")
        time.sleep(0.2)


@pytest.fixture
def cluster(tmp_path: Path, redis_server: Redis, postgres: Postgres, pg_url: str,
            moto_server: str, s3_bucket: str, aws_env: dict[str, str]) -> Iterator[Cluster]:
    env = {**os.environ, **TEST_ENV, **aws_env, **QUEUE_ENV,
           "PYTHONPATH": str(REPO),
           "LEARNCAST_QUEUE__URL": redis_server.url, "LEARNCAST_STATE__URL": pg_url,
           "LEARNCAST_STORAGE__BACKEND": "s3", "LEARNCAST_STORAGE__BUCKET": s3_bucket,
           "LEARNCAST_STORAGE__ENDPOINT_URL": moto_server,
           "LEARNCAST_STORAGE__REGION": REGION, "LEARNCAST_STORAGE__ADDRESSING_STYLE": "path",
           "LEARNCAST_STORAGE__PREFIX": "podcasts"}
    env.pop("LEARNCAST_WORKSPACE", None)
    assert s3_bucket == BUCKET
    c = Cluster(tmp_path, env, redis_server, postgres, pg_url, coordinator=tmp_path / "coord")
    c.workspace("coord")
    try:
        yield c
    finally:
        c.stop()
