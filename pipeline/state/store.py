"""The state store: episodes, per-stage progress, an event log; SQLite or PostgreSQL.

Feeds and `learncast status` are built from here, never from whatever files are on disk.
One class serves both databases through SQLAlchemy Core: the tables are defined once
(`pipeline.state.schema`) and every query is written once. What differs is how a write is
made safe against other processes: SQLite takes its one write lock up front (BEGIN IMMEDIATE,
WAL mode and a busy timeout let several `run`/`watch` processes share a file); PostgreSQL
locks just the rows involved (`SELECT ... FOR UPDATE`, `SKIP LOCKED` when claiming work) and
a transaction-scoped advisory lock where a row may not exist yet (a new feed's identity).
Every claim is one transaction, so two workers never process the same episode or stage.

PostgreSQL runs on another machine and can go away for a moment (a restart, a failover): a
call that loses its connection outside an open transaction reconnects and is tried again,
for up to `[state] retry_seconds`, before it fails with a `RetryableError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import hashlib
import json
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from pydantic import ValidationError
from sqlalchemy import (
    Connection,
    and_,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from pipeline.artifacts import Artifact
from pipeline.errors import InputError, PipelineError, RetryableError
from pipeline.fsutil import pid_alive
from pipeline.media import Probe
from pipeline.models import Job, Results, Status, StoredArtifact
from pipeline.sidecar import EpisodeMetadata
from pipeline.state.migrations import migrate
from pipeline.state.schema import (
    downloads,
    episodes,
    events,
    learners,
    notifications,
    reviews,
    show_feeds,
    stage_runs,
    working_copies,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: A claim held by a process on another host is taken over only after this long without a
#: heartbeat (same-host owners are checked directly: is the process still alive?).
LEASE_SECONDS = 3600.0


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _process_start(pid: int) -> str:
    """The kernel's start time of `pid`, so a recycled pid is not mistaken for the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def process_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def owner_alive(token: str) -> bool:
    """Whether the process behind an owner token still runs (other hosts: assume yes)."""
    try:
        host, pid_s, start = token.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True
    return pid_alive(pid) and _process_start(pid) == start



def database_url(where: Path | str) -> str:
    """A SQLAlchemy URL for a SQLite file path or a `postgresql://` URL (psycopg 3 driver)."""
    raw = str(where)
    if raw.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + raw.split("://", 1)[1]
    if raw.startswith(("postgresql+", "sqlite:")):
        return raw
    return f"sqlite:///{Path(raw)}"


def display_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


@dataclass(frozen=True)
class StageClaim:
    """The answer to "may I run this stage?": `claimed` (attempt n is yours), `done` (someone
    finished it: do nothing), `busy` (a live worker holds it)."""

    state: Literal["claimed", "done", "busy"]
    attempt: int


@dataclass(frozen=True)
class WorkingCopy:
    """An artifact's current copy in the storage backend (distributed mode): `path` is where
    it lives in a workspace (`job.files`), `key` where it is stored, under a private prefix."""

    artifact: Artifact
    path: str
    key: str
    sha256: str
    size: int


class LeaseLost(RetryableError):
    """Another worker took this stage over (our heartbeat stopped for longer than the lease):
    what we made is discarded, theirs counts."""


def _disconnect(exc: BaseException) -> bool:
    """Whether a database error means "the connection went away" (worth reconnecting)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)


def _reconnecting(method: Callable[P, R]) -> Callable[P, R]:
    """PostgreSQL: on a lost connection, reconnect and call again (only when no outer
    transaction is open: that one cannot be replayed), for up to `retry_seconds`."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        self: StateDB = args[0]  # type: ignore[assignment]
        if self.dialect != "postgresql":
            return method(*args, **kwargs)
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            try:
                return method(*args, **kwargs)
            except sa_exc.DBAPIError as exc:
                if not _disconnect(exc) or self._depth:
                    raise
                self._reset()
                if time.monotonic() + delay > deadline:
                    raise RetryableError(
                        f"the state database {display_url(self.url)} is unreachable "
                        f"({type(exc.orig).__name__}: {str(exc.orig).strip()[:200]}); check "
                        "that PostgreSQL is running and [state] url is right") from exc
                log.warning("[state] %s unreachable (%s); retrying in %.1f s",
                            display_url(self.url), type(exc.orig).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    return wrapper


class StateDB:
    """The state store (`pipeline.state.StateStore`), on SQLite (a file path) or PostgreSQL
    (a `postgresql://` URL). One connection per store, shared by the threads of a process
    under a lock; processes coordinate through the database."""

    def __init__(self, where: Path | str, *, retry_seconds: float = 30.0) -> None:
        self.url = database_url(where)
        self.retry_seconds = retry_seconds
        self.owner = process_token()
        self._lock = threading.RLock()
        self._depth = 0
        self._immediate = True
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self.path: Path | None = Path(parsed.database or "")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, poolclass=NullPool,
                                   connect_args={"timeout": 30.0, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", self._sqlite_begin)
            self._insert: Any = sqlite_dialect.insert
        elif self.dialect == "postgresql":
            self.path = None
            engine = create_engine(self.url, poolclass=NullPool,
                                   connect_args={"connect_timeout": 10,
                                                 "application_name": "learncast"})
            self._insert = pg_dialect.insert
        else:
            raise InputError(f"[state] url {display_url(self.url)!r}: unsupported database "
                             f"'{self.dialect}'; use a postgresql:// URL, or leave it empty "
                             "for SQLite under state/")
        self._engine = engine
        self._conn: Connection | None = None
        self.schema_before, self.schema_after = self._migrate()

    @_reconnecting
    def _migrate(self) -> tuple[int, int]:
        with self.transaction() as c:
            return migrate(c)

    def _sqlite_begin(self, conn: Connection) -> None:
        # Writers take the lock up front so read-then-write cannot race; reads only snapshot.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if self._immediate else "BEGIN")

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._engine.connect()
        return self._conn

    def _reset(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.invalidate()
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            self._engine.dispose()

    @contextlib.contextmanager
    def _tx(self, write: bool) -> Iterator[Connection]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._connection()
                finally:
                    self._depth -= 1
                return
            conn = self._connection()
            if conn.in_transaction():  # left open by an interrupted call
                conn.rollback()
            self._immediate = write
            trans = conn.begin()
            self._depth = 1
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(Exception):
                    trans.rollback()
                raise
            finally:
                self._depth -= 1
            trans.commit()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE). Nested use joins the outer one
        (see `locked`)."""
        with self._tx(write=True) as c:
            yield c

    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        return self._tx(write=False)

    def _serialise(self, c: Connection, name: str) -> None:
        """PostgreSQL: hold a transaction-scoped lock on `name` (SQLite's BEGIN IMMEDIATE
        already serialises every writer)."""
        if self.dialect == "postgresql":
            c.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                      {"k": zlib.crc32(name.encode()) | (1 << 40)})

    @contextlib.contextmanager
    def locked(self, job_id: str) -> Iterator[Job]:
        """The episode as it is now, locked until the block ends: a check ("is this still
        revision 3?") and the write that depends on it are one step, across threads and
        processes. Keep the block short (other writers wait)."""
        with self.transaction() as c:
            row = c.execute(select(episodes).where(episodes.c.id == job_id)
                            .with_for_update()).mappings().first()
            if row is None:
                raise InputError(f"episode {job_id} no longer exists; reload the page")
            yield _job(row)

    @contextlib.contextmanager
    def publishing(self, show: str) -> Iterator[None]:
        """One publisher of `show`'s feeds at a time, across threads, processes and machines.

        Two publishers building at once each put a feed that lacks the other's new episode,
        and the one stored last wins. The lock is held apart from the data transactions (a
        file lock beside the SQLite database, a session advisory lock on PostgreSQL), so what
        the block records commits as it goes and a slow upload blocks no other writer."""
        key = f"publish:{show}"
        if self.path is not None:
            digest = hashlib.sha256(key.encode()).hexdigest()[:16]
            with open(self.path.with_name(f"{self.path.name}.{digest}.lock"), "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes (or we die)
                yield
            return
        number = zlib.crc32(key.encode()) | (1 << 41)
        with self._engine.connect() as c:  # its own session: the lock dies with it
            c.execute(text("SELECT pg_advisory_lock(:k)"), {"k": number})
            c.commit()
            try:
                yield
            finally:
                c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": number})
                c.commit()

    # --- episodes -------------------------------------------------------------------------

    @_reconnecting
    def insert(self, job: Job) -> None:
        check_storable(job)
        with self.transaction() as c:
            c.execute(episodes.insert().values(
                id=job.id, sha256=job.sha256, show=job.show, title=job.title, slug=job.slug,
                source=job.source, original=job.original, status=job.status.value,
                stage=job.stage, error=job.error, probe=_probe(job),
                metadata=job.metadata.model_dump_json(), **_payload(job),
                created_at=job.created_at.isoformat(), updated_at=_now()))

    @_reconnecting
    def save(self, job: Job) -> None:
        check_storable(job)
        with self.transaction() as c:
            c.execute(update(episodes).where(episodes.c.id == job.id).values(
                show=job.show, title=job.title, slug=job.slug, original=job.original,
                status=job.status.value, stage=job.stage, error=job.error, probe=_probe(job),
                metadata=job.metadata.model_dump_json(), **_payload(job), updated_at=_now(),
                heartbeat=time.time()))

    @_reconnecting
    def delete(self, job_id: str) -> None:
        with self.transaction() as c:
            for table in (stage_runs, reviews, working_copies):
                c.execute(delete(table).where(table.c.episode_id == job_id))
            c.execute(delete(episodes).where(episodes.c.id == job_id))

    @_reconnecting
    def get(self, job_id: str) -> Job | None:
        with self._read() as c:
            row = c.execute(select(episodes).where(episodes.c.id == job_id)).mappings().first()
        return _job(row) if row else None

    @_reconnecting
    def by_sha256(self, sha256: str) -> Job | None:
        with self._read() as c:
            row = c.execute(select(episodes).where(episodes.c.sha256 == sha256)
                            ).mappings().first()
        return _job(row) if row else None

    @_reconnecting
    def find(self, prefix: str) -> list[Job]:
        """Episodes whose id starts with `prefix` (ids may be abbreviated on the command line)."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._read() as c:
            rows = c.execute(select(episodes).where(episodes.c.id.like(pattern, escape="\\"))
                             .order_by(episodes.c.created_at)).mappings().all()
        return [_job(r) for r in rows]

    @_reconnecting
    def all(self, show: str | None = None) -> list[Job]:
        query = select(episodes)
        if show:
            query = query.where(episodes.c.show == show)
        with self._read() as c:
            rows = c.execute(query.order_by(episodes.c.created_at, episodes.c.id)
                             ).mappings().all()
        return [_job(r) for r in rows]

    @_reconnecting
    def claim_next(self, statuses: tuple[Status, ...] = (Status.QUEUED, Status.PROCESSING),
                   ) -> Job | None:
        """Atomically take one episode that needs work and nobody (alive) is working on."""
        with self.transaction() as c:
            rows = c.execute(
                select(episodes.c.id, episodes.c.owner, episodes.c.heartbeat)
                .where(episodes.c.status.in_([s.value for s in statuses]))
                .order_by(episodes.c.created_at, episodes.c.id)
                .with_for_update(skip_locked=True)).mappings().all()
            for row in rows:
                if not self._free(row["owner"], row["heartbeat"]):
                    continue
                c.execute(update(episodes).where(episodes.c.id == row["id"]).values(
                    owner=self.owner, heartbeat=time.time(), status=Status.PROCESSING.value))
                break
            else:
                return None
        return self.get(row["id"])

    def _free(self, owner: str | None, heartbeat: float | None,
              lease_s: float = LEASE_SECONDS) -> bool:
        """Unowned, or owned by a process that died (or, on another host, went silent).

        An episode owned by this very process is never free: another worker thread has it.
        """
        if not owner:
            return True
        if owner == self.owner:
            return False
        if not owner.startswith(socket.gethostname() + ":"):
            return time.time() - (heartbeat or 0) > lease_s
        return not owner_alive(owner)

    @_reconnecting
    def release(self, job_id: str) -> None:
        with self.transaction() as c:
            c.execute(update(episodes).where(episodes.c.id == job_id,
                                             episodes.c.owner == self.owner).values(owner=None))

    @_reconnecting
    def take_queued(self, limit: int = 1000, job_id: str | None = None) -> list[Job]:
        """Distributed mode: queued episodes (or only `job_id`, if it is queued) become
        `processing` (their stages are now the workers' to claim); returns them, for the
        caller to send their first task."""
        only = [] if job_id is None else [episodes.c.id == job_id]
        with self.transaction() as c:
            ids = c.execute(select(episodes.c.id).where(episodes.c.status == Status.QUEUED.value,
                                                        *only)
                            .order_by(episodes.c.created_at, episodes.c.id).limit(limit)
                            .with_for_update(skip_locked=True)).scalars().all()
            if ids:
                c.execute(update(episodes).where(episodes.c.id.in_(ids)).values(
                    status=Status.PROCESSING.value, owner=None, error=None,
                    heartbeat=time.time(), updated_at=_now()))
        return [job for i in ids if (job := self.get(i)) is not None]

    # --- stages ---------------------------------------------------------------------------

    @_reconnecting
    def stage_status(self, job_id: str) -> dict[str, dict[str, Any]]:
        with self._read() as c:
            rows = c.execute(select(stage_runs).where(stage_runs.c.episode_id == job_id)
                             ).mappings().all()
        return {r["stage"]: dict(r) for r in rows}

    @_reconnecting
    def stage_started(self, job_id: str, stage: str) -> int:
        """Record an attempt; returns the attempt number (1-based)."""
        with self.transaction() as c:
            now = _now()
            stmt = self._insert(stage_runs).values(episode_id=job_id, stage=stage,
                                                   status="running", attempts=1, started_at=now)
            c.execute(stmt.on_conflict_do_update(
                index_elements=[stage_runs.c.episode_id, stage_runs.c.stage],
                set_={"status": "running", "attempts": stage_runs.c.attempts + 1,
                      "started_at": now, "error": None, "progress_done": None,
                      "progress_total": None}))
            c.execute(update(episodes).where(episodes.c.id == job_id).values(
                stage=stage, heartbeat=time.time(), updated_at=now))
            attempts = c.execute(select(stage_runs.c.attempts).where(
                stage_runs.c.episode_id == job_id, stage_runs.c.stage == stage)).scalar_one()
        return int(attempts)

    @_reconnecting
    def stage_progress(self, job_id: str, stage: str, done: float, total: float) -> None:
        """How far a running stage got (transcribe: seconds of audio); also a heartbeat."""
        with self.transaction() as c:
            c.execute(update(stage_runs).where(
                stage_runs.c.episode_id == job_id, stage_runs.c.stage == stage).values(
                progress_done=done, progress_total=total))
            c.execute(update(episodes).where(episodes.c.id == job_id).values(
                heartbeat=time.time()))

    @_reconnecting
    def running_progress(self) -> dict[str, tuple[str, float, float]]:
        """{episode id: (stage, done, total)} for every running stage that reported one."""
        with self._read() as c:
            rows = c.execute(select(stage_runs.c.episode_id, stage_runs.c.stage,
                                    stage_runs.c.progress_done, stage_runs.c.progress_total)
                             .where(stage_runs.c.status == "running",
                                    stage_runs.c.progress_total.is_not(None))).all()
        return {r[0]: (r[1], float(r[2] or 0.0), float(r[3])) for r in rows}

    @_reconnecting
    def claim_stage(self, job_id: str, stage: str, lease_s: float) -> StageClaim:
        """Distributed mode: take `stage` of an episode unless it is done or a live worker
        holds it (same host: its process runs; another host: a heartbeat within `lease_s`).
        A claim counts an attempt and records this process as the owner."""
        with self.transaction() as c:
            c.execute(self._insert(stage_runs).values(
                episode_id=job_id, stage=stage, status="queued", attempts=0
            ).on_conflict_do_nothing(index_elements=[stage_runs.c.episode_id,
                                                     stage_runs.c.stage]))
            row = c.execute(select(stage_runs).where(
                stage_runs.c.episode_id == job_id, stage_runs.c.stage == stage
            ).with_for_update()).mappings().one()
            attempts = int(row["attempts"])
            if row["status"] == "done":
                return StageClaim("done", attempts)
            # A stage this very process holds is not running: a worker process runs one
            # stage at a time, so that claim is left from an attempt that broke off.
            if row["status"] == "running" and row["owner"] != self.owner and not self._free(
                    row["owner"], row["heartbeat"], lease_s):
                return StageClaim("busy", attempts)
            now, beat = _now(), time.time()
            c.execute(update(stage_runs).where(
                stage_runs.c.episode_id == job_id, stage_runs.c.stage == stage).values(
                status="running", attempts=attempts + 1, started_at=now, error=None,
                owner=self.owner, heartbeat=beat))
            c.execute(update(episodes).where(episodes.c.id == job_id).values(
                stage=stage, status=Status.PROCESSING.value, heartbeat=beat, updated_at=now))
        return StageClaim("claimed", attempts + 1)

    @_reconnecting
    def stage_heartbeat(self, job_id: str, stage: str) -> bool:
        """Renew this process's lease on a running stage; False if it is no longer ours."""
        beat = time.time()
        with self.transaction() as c:
            held = c.execute(update(stage_runs).where(
                stage_runs.c.episode_id == job_id, stage_runs.c.stage == stage,
                stage_runs.c.owner == self.owner, stage_runs.c.status == "running"
            ).values(heartbeat=beat)).rowcount
            if held:
                c.execute(update(episodes).where(episodes.c.id == job_id).values(heartbeat=beat))
        return bool(held)

    @_reconnecting
    def stage_retry_later(self, job_id: str, stage: str, error: str) -> None:
        """Give a claimed stage back after a transient fault; the next attempt may run on any
        worker (the attempt count stays, so retries stay bounded)."""
        with self.transaction() as c:
            c.execute(update(stage_runs).where(
                stage_runs.c.episode_id == job_id, stage_runs.c.stage == stage,
                stage_runs.c.owner == self.owner).values(status="retry", owner=None,
                                                         error=error))

    @_reconnecting
    def stage_finished(self, job: Job, stage: str, seconds: float, *,
                       copies: Sequence[WorkingCopy] = (), leased: bool = False) -> None:
        """Save the job's new artifacts (and their working copies) and mark the stage done in
        one transaction. `leased`: only if this process still holds the stage's lease
        (else `LeaseLost`: another worker took it over and its result counts)."""
        with self.transaction() as c:
            where = [stage_runs.c.episode_id == job.id, stage_runs.c.stage == stage]
            if leased:
                where += [stage_runs.c.owner == self.owner, stage_runs.c.status == "running"]
            done = c.execute(update(stage_runs).where(*where).values(
                status="done", finished_at=_now(), seconds=seconds, error=None, owner=None
            )).rowcount
            if leased and not done:
                raise LeaseLost(f"stage '{stage}' of episode {job.id} was taken over by another "
                                "worker while this one was out of touch; its result counts")
            c.execute(update(episodes).where(episodes.c.id == job.id).values(
                **_payload(job), title=job.title, updated_at=_now(), heartbeat=time.time()))
            self._store_copies(c, job.id, copies)

    @_reconnecting
    def stage_failed(self, job_id: str, stage: str, error: str) -> None:
        with self.transaction() as c:
            c.execute(update(stage_runs).where(
                stage_runs.c.episode_id == job_id, stage_runs.c.stage == stage).values(
                status="failed", finished_at=_now(), error=error, owner=None))

    @_reconnecting
    def stage_held(self, job_id: str, stage: str) -> None:
        """A gate stage that is waiting (for a reviewer): neither done nor failed."""
        with self.transaction() as c:
            c.execute(update(stage_runs).where(
                stage_runs.c.episode_id == job_id, stage_runs.c.stage == stage).values(
                status="held", finished_at=_now(), owner=None))

    @_reconnecting
    def reset_stages(self, job_id: str, stages: list[str]) -> None:
        with self.transaction() as c:
            c.execute(delete(stage_runs).where(stage_runs.c.episode_id == job_id,
                                               stage_runs.c.stage.in_(stages)))

    # --- working copies (distributed mode) ------------------------------------------------

    def _store_copies(self, c: Connection, job_id: str, copies: Sequence[WorkingCopy]) -> None:
        for copy in copies:
            values = {"path": copy.path, "key": copy.key, "sha256": copy.sha256,
                      "size": copy.size}
            c.execute(self._insert(working_copies).values(
                episode_id=job_id, artifact=copy.artifact.value, **values
            ).on_conflict_do_update(index_elements=[working_copies.c.episode_id,
                                                    working_copies.c.artifact], set_=values))

    @_reconnecting
    def copies_stored(self, job_id: str, copies: Sequence[WorkingCopy]) -> None:
        with self.transaction() as c:
            self._store_copies(c, job_id, copies)

    @_reconnecting
    def working_copies(self, job_id: str) -> dict[Artifact, WorkingCopy]:
        with self._read() as c:
            rows = c.execute(select(working_copies).where(
                working_copies.c.episode_id == job_id)).mappings().all()
        return {Artifact(r["artifact"]): WorkingCopy(Artifact(r["artifact"]), r["path"],
                                                     r["key"], r["sha256"], int(r["size"]))
                for r in rows}

    @_reconnecting
    def drop_copies(self, job_id: str, keys: Sequence[str]) -> None:
        """Forget working copies whose objects were deleted."""
        with self.transaction() as c:
            c.execute(delete(working_copies).where(working_copies.c.episode_id == job_id,
                                                   working_copies.c.key.in_(list(keys))))

    # --- feeds ----------------------------------------------------------------------------
    # One row per (show, feed) holds what must never change once a feed exists: its
    # podcast:guid (apps and directories follow a feed by it, even when its URL moves) and the
    # unguessable token of internal shows; plus what was uploaded last, so `publish` knows
    # when a scheduled episode makes a feed out of date.

    @_reconnecting
    def feed_identity(self, show: str, feed: str, url_for: Callable[[str], str],
                      guid_for: Callable[[str], str], new_token: Callable[[], str],
                      ) -> tuple[str, str]:
        """(guid, token) of a feed, assigned on first use and kept for good.

        `url_for(token)` gives the feed's URL; the guid is derived from the first URL only.
        The token is shared by all feeds of a show.
        """
        with self.transaction() as c:
            self._serialise(c, f"feed:{show}")
            row = c.execute(select(show_feeds.c.guid, show_feeds.c.token).where(
                show_feeds.c.show == show, show_feeds.c.feed == feed)).mappings().first()
            if row:
                return row["guid"], row["token"] or ""
            other = c.execute(select(show_feeds.c.token).where(
                show_feeds.c.show == show, show_feeds.c.token != "").limit(1)).scalar()
            token = other if other else new_token()
            url = url_for(token)
            guid = guid_for(url)
            c.execute(show_feeds.insert().values(show=show, feed=feed, guid=guid,
                                                 first_url=url, token=token,
                                                 created_at=_now()))
            return guid, token

    @_reconnecting
    def feed_published(self, show: str, feed: str, *, sha256: str, url: str,
                       items: list[str]) -> None:
        with self.transaction() as c:
            c.execute(update(show_feeds).where(show_feeds.c.show == show,
                                               show_feeds.c.feed == feed).values(
                sha256=sha256, url=url, items=json.dumps(items), published_at=_now()))

    @_reconnecting
    def feed_rows(self, show: str | None = None) -> list[dict[str, Any]]:
        query = select(show_feeds)
        if show:
            query = query.where(show_feeds.c.show == show)
        with self._read() as c:
            rows = c.execute(query.order_by(show_feeds.c.show, show_feeds.c.feed)
                             ).mappings().all()
        return [{**dict(r), "items": json.loads(r["items"])} for r in rows]

    # --- events ---------------------------------------------------------------------------

    @_reconnecting
    def event(self, job_id: str | None, kind: str, message: str) -> None:
        with self.transaction() as c:
            c.execute(events.insert().values(episode_id=job_id, at=_now(), kind=kind,
                                             message=message))

    @_reconnecting
    def events(self, job_id: str) -> list[dict[str, Any]]:
        with self._read() as c:
            rows = c.execute(select(events.c.at, events.c.kind, events.c.message)
                             .where(events.c.episode_id == job_id).order_by(events.c.id)
                             ).mappings().all()
        return [dict(r) for r in rows]

    # --- reviews (the caption review audit trail) ---------------------------------------

    @_reconnecting
    def add_review(self, job_id: str, reviewer: str, action: str, revision: int,
                   note: str = "", captions_sha256: str = "") -> None:
        """Append to the audit trail: who did what (approve, request-changes, edit) to which
        caption revision (and exact caption file), and when. Rows are never updated, and are
        deleted only with their episode."""
        with self.transaction() as c:
            c.execute(reviews.insert().values(episode_id=job_id, at=_now(), reviewer=reviewer,
                                              action=action, revision=revision, note=note,
                                              captions_sha256=captions_sha256))

    @_reconnecting
    def reviews(self, job_id: str) -> list[dict[str, Any]]:
        with self._read() as c:
            rows = c.execute(select(reviews.c.at, reviews.c.reviewer, reviews.c.action,
                                    reviews.c.revision, reviews.c.note,
                                    reviews.c.captions_sha256)
                             .where(reviews.c.episode_id == job_id).order_by(reviews.c.id)
                             ).mappings().all()
        return [dict(r) for r in rows]

    @_reconnecting
    def counts(self) -> dict[str, int]:
        """Episodes per status (for `learncast migrate` and monitoring)."""
        with self._read() as c:
            rows = c.execute(select(episodes.c.status, func.count()).group_by(
                episodes.c.status)).all()
        return {str(status): int(n) for status, n in rows}

    # --- notifications: the outbox (pipeline.notify) -------------------------------------
    # A notification is a row before it is a message: recorded once per (event key, channel,
    # recipient) whatever number of processes see the event, claimed by one sender at a
    # time under a lease (a sender that dies mid-delivery is replaced once it runs out), and
    # settled in a transaction that checks the claim is still the sender's own.

    @_reconnecting
    def notify_add(self, rows: Sequence[dict[str, Any]]) -> int:
        """Record notifications; one whose (key, channel, recipient) is already recorded is
        left as it is. Returns how many were new."""
        added = 0
        with self.transaction() as c:
            for row in rows:
                # RETURNING, not rowcount: psycopg reports -1 for a skipped conflict insert
                added += c.execute(self._insert(notifications).values(
                    **row, created_at=_now()).on_conflict_do_nothing(index_elements=[
                        notifications.c.key, notifications.c.channel,
                        notifications.c.recipient]).returning(notifications.c.id)
                ).first() is not None
        return added

    @_reconnecting
    def notify_claim(self, now: float, lease_s: float) -> dict[str, Any] | None:
        """Take one notification that is due (pending with `next_at` <= `now`, or claimed by a
        sender whose lease ran out) for this process; None when there is none. Its `attempts`
        count this try. `now` only decides what is due (a courier passes the start of its
        pass, so a retry it schedules waits for the next pass); leases are always on the
        wall clock, or a claim made with an earlier `now` would look expired at once and be
        taken again and again."""
        n = notifications.c
        with self.transaction() as c:
            row = c.execute(select(notifications).where(or_(
                and_(n.status == "pending", n.next_at <= now),
                and_(n.status == "sending", n.lease_until < time.time()))).order_by(
                n.next_at, n.id).limit(1).with_for_update(skip_locked=True)).mappings().first()
            if row is None:
                return None
            attempts = int(row["attempts"]) + 1
            c.execute(update(notifications).where(n.id == row["id"]).values(
                status="sending", owner=self.owner, lease_until=time.time() + lease_s,
                attempts=attempts))
        return {**dict(row), "status": "sending", "attempts": attempts}

    @_reconnecting
    def notify_settle(self, row_id: int, *, error: str | None = None,
                      retry_at: float | None = None) -> bool:
        """After a try: sent (no `error`), tried again from `retry_at`, or given up (an
        `error` and no `retry_at`). False when the claim was no longer this process's."""
        n = notifications.c
        if error is None:
            values: dict[str, Any] = {"status": "sent", "sent_at": _now(), "error": None}
        elif retry_at is not None:
            values = {"status": "pending", "next_at": retry_at, "error": error[:2000]}
        else:
            values = {"status": "failed", "error": error[:2000]}
        with self.transaction() as c:
            done = c.execute(update(notifications).where(
                n.id == row_id, n.owner == self.owner, n.status == "sending").values(
                **values, owner=None, lease_until=None)).rowcount
        return bool(done)

    @_reconnecting
    def notify_digest(self, *, before: str, key: str, now: float,
                      build: Callable[[str, list[dict[str, Any]]], str]) -> int:
        """Gather e-mails waiting for the digest (recorded before `before`) into one message
        per recipient, recorded under `key` (one digest per day and recipient, whichever
        process gets there first). Returns how many digests were recorded."""
        n = notifications.c
        made = 0
        with self.transaction() as c:
            self._serialise(c, "notify-digest")
            rows = c.execute(select(notifications).where(
                n.status == "digest", n.created_at < before).order_by(n.id)).mappings().all()
            by_recipient: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                by_recipient.setdefault(row["recipient"], []).append(dict(row))
            for recipient, waiting in by_recipient.items():
                added = c.execute(self._insert(notifications).values(
                    key=key, channel="email", recipient=recipient, kind="digest",
                    episode_id=None, payload=build(recipient, waiting), status="pending",
                    next_at=now, created_at=_now()).on_conflict_do_nothing(index_elements=[
                        n.key, n.channel, n.recipient]).returning(n.id)).first() is not None
                if added:
                    made += 1
                    c.execute(update(notifications).where(
                        n.id.in_([w["id"] for w in waiting])).values(status="digested"))
        return made

    @_reconnecting
    def notifications(self, status: str | None = None) -> list[dict[str, Any]]:
        query = select(notifications)
        if status:
            query = query.where(notifications.c.status == status)
        with self._read() as c:
            rows = c.execute(query.order_by(notifications.c.id)).mappings().all()
        return [dict(r) for r in rows]

    # --- learners of private shows ---------------------------------------------------------

    @_reconnecting
    def learner_add(self, learner_id: str, show: str, name: str, token_sha256: str) -> None:
        with self.transaction() as c:
            c.execute(learners.insert().values(id=learner_id, show=show, name=name,
                                               token_sha256=token_sha256, created_at=_now()))

    @_reconnecting
    def learners(self, show: str | None = None) -> list[dict[str, Any]]:
        """Learners (without their token's digest), oldest first."""
        query = select(learners.c.id, learners.c.show, learners.c.name, learners.c.created_at,
                       learners.c.revoked_at)
        if show:
            query = query.where(learners.c.show == show)
        with self._read() as c:
            rows = c.execute(query.order_by(learners.c.created_at, learners.c.id)
                             ).mappings().all()
        return [dict(r) for r in rows]

    @_reconnecting
    def learner_by_token(self, token_sha256: str) -> dict[str, Any] | None:
        """The learner holding a token (revoked ones too: the caller decides, so a revoked
        and an unknown token take the same query)."""
        with self._read() as c:
            row = c.execute(select(learners).where(learners.c.token_sha256 == token_sha256)
                            ).mappings().first()
        return dict(row) if row else None

    @_reconnecting
    def learner_revoke(self, show: str, who: str) -> list[dict[str, Any]]:
        """Revoke the show's active learners named `who` (or with that id); returns them."""
        l_ = learners.c
        with self.transaction() as c:
            rows = c.execute(select(l_.id, l_.name).where(
                l_.show == show, l_.revoked_at.is_(None),
                or_(l_.name == who, l_.id == who)).with_for_update()).mappings().all()
            if rows:
                c.execute(update(learners).where(l_.id.in_([r["id"] for r in rows])).values(
                    revoked_at=_now()))
        return [dict(r) for r in rows]

    # --- download counts (pipeline.stats) --------------------------------------------------

    @_reconnecting
    def downloads_replace(self, days: Sequence[str],
                          rows: Sequence[tuple[str, str, str, int]]) -> None:
        """Replace the counts of `days` with `rows` (episode, day, learner, downloads): the
        days the access logs at hand cover are counted afresh, older ones stay."""
        with self.transaction() as c:
            if days:
                c.execute(delete(downloads).where(downloads.c.day.in_(list(days))))
            for episode_id, day, learner, count in rows:
                c.execute(downloads.insert().values(episode_id=episode_id, day=day,
                                                    learner=learner, downloads=count))

    @_reconnecting
    def downloads(self) -> list[dict[str, Any]]:
        with self._read() as c:
            rows = c.execute(select(downloads).order_by(
                downloads.c.episode_id, downloads.c.day, downloads.c.learner)).mappings().all()
        return [dict(r) for r in rows]


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    """pysqlite must not open transactions itself (the store does, with BEGIN IMMEDIATE for
    writers); WAL lets readers go on while one process writes."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    # Switching to WAL needs a moment of exclusive access, for which SQLite's busy handler
    # does not wait: two processes opening a new database at once would see "locked".
    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except Exception as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)
    cur.close()


def _probe(job: Job) -> str | None:
    return json.dumps(job.probe.to_dict()) if job.probe else None


def check_storable(job: Job) -> None:
    """Refuse a job that would not read back as it is: nothing goes into the database that
    turns into an error on every later command.

    pydantic writes infinity and NaN as null, which then fails validation on every read (one
    chapter `start: .inf` once made every later `run` and `status` crash); databases refuse
    text with lone surrogates (undecodable file names).
    """
    problems = []
    stored = (("metadata", job.metadata, EpisodeMetadata, job.metadata.model_dump_json()),
              ("results", job.results, Results, _payload(job)["results"]))
    for name, value, model, written in stored:
        try:
            back = model.model_validate_json(written)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            problems.append(f"its {name} would not read back ({where}: {first['msg']})")
            continue
        if back != value:
            problems.append(f"its {name} would read back changed")
    for name in ("id", "show", "title", "slug", "source", "original"):
        try:
            getattr(job, name).encode("utf-8")
        except UnicodeEncodeError:
            problems.append(f"its {name} is not valid text")
    if problems:
        raise PipelineError(f"episode {job.id} cannot be stored: {'; '.join(problems)}. This "
                            "is a Learncast bug; please report it with the log")


def _payload(job: Job) -> dict[str, str]:
    """files, measurements, objects and results as the JSON the database keeps."""
    return {"files": json.dumps({a.value: p for a, p in job.files.items()}),
            "measurements": json.dumps(job.measurements),
            "objects": json.dumps({a.value: o.model_dump() for a, o in job.objects.items()}),
            "results": job.results.model_dump_json(exclude_none=True)}


def _job(row: Any) -> Job:
    return Job(
        id=row["id"], sha256=row["sha256"], show=row["show"], title=row["title"],
        slug=row["slug"], source=row["source"], original=row["original"],
        probe=Probe.from_dict(json.loads(row["probe"])) if row["probe"] else None,
        metadata=EpisodeMetadata.model_validate_json(row["metadata"]),
        status=Status(row["status"]), stage=row["stage"], error=row["error"],
        files={Artifact(k): v for k, v in json.loads(row["files"]).items()},
        measurements=json.loads(row["measurements"]),
        objects={Artifact(k): StoredArtifact.model_validate(v)
                 for k, v in json.loads(row["objects"]).items()},
        results=Results.model_validate_json(row["results"]),
        created_at=dt.datetime.fromisoformat(row["created_at"]),
    )
