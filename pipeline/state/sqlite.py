"""The SQLite state database: episodes, per-stage progress, and an event log.

Feeds and `learncast status` are built from here, never from whatever files are on disk.
WAL mode and a busy timeout let several `run`/`watch` processes share one database; every
claim is a single conditional UPDATE, so two workers never process the same episode.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.artifacts import Artifact
from pipeline.errors import InputError, PipelineError
from pipeline.fsutil import pid_alive
from pipeline.media import Probe
from pipeline.models import Job, Results, Status, StoredArtifact
from pipeline.sidecar import EpisodeMetadata
from pipeline.state.migrations import migrate

SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
    id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    show TEXT NOT NULL,
    title TEXT NOT NULL,
    slug TEXT NOT NULL,
    source TEXT NOT NULL,
    original TEXT NOT NULL,
    status TEXT NOT NULL,
    stage TEXT,
    error TEXT,
    probe TEXT,
    metadata TEXT NOT NULL,
    files TEXT NOT NULL DEFAULT '{}',
    measurements TEXT NOT NULL DEFAULT '{}',
    objects TEXT NOT NULL DEFAULT '{}',
    results TEXT NOT NULL DEFAULT '{}',
    owner TEXT,
    heartbeat REAL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stage_runs (
    episode_id TEXT NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    finished_at TEXT,
    seconds REAL,
    error TEXT,
    PRIMARY KEY (episode_id, stage)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id TEXT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS episodes_status ON episodes(status);
CREATE TABLE IF NOT EXISTS show_feeds (
    show TEXT NOT NULL,
    feed TEXT NOT NULL,
    guid TEXT NOT NULL,
    first_url TEXT NOT NULL,
    token TEXT,
    sha256 TEXT,
    items TEXT NOT NULL DEFAULT '[]',
    url TEXT,
    published_at TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (show, feed)
);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id TEXT NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    action TEXT NOT NULL,
    revision INTEGER NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    captions_sha256 TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS reviews_episode ON reviews(episode_id, id);
"""

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


class StateDB:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.owner = process_token()
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None,
                                     check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # Switching to WAL needs a moment of exclusive access, for which SQLite's busy handler
        # does not wait: two processes opening a new database at once would see "locked".
        for attempt in range(100):
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)

        with self.transaction() as c:
            migrate(c, SCHEMA)

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: take the write lock up front so read-then-write cannot race.

        Nested use joins the outer transaction (see `locked`)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth -= 1
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def locked(self, job_id: str) -> Iterator[Job]:
        """The episode as it is now, with the write lock held until the block ends: a check
        ("is this still revision 3?") and the write that depends on it are one step, across
        threads and processes. Keep the block short (other writers wait)."""
        with self.transaction():
            job = self.get(job_id)
            if job is None:
                raise InputError(f"episode {job_id} no longer exists; reload the page")
            yield job

    # --- episodes -------------------------------------------------------------------------

    def insert(self, job: Job) -> None:
        check_storable(job)
        now = _now()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO episodes (id, sha256, show, title, slug, source, original, status,"
                " stage, error, probe, metadata, files, measurements, objects, results,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.sha256, job.show, job.title, job.slug, job.source, job.original,
                 job.status.value, job.stage, job.error,
                 json.dumps(job.probe.to_dict()) if job.probe else None,
                 job.metadata.model_dump_json(), *_payload(job), job.created_at.isoformat(),
                 now),
            )

    def save(self, job: Job) -> None:
        check_storable(job)
        with self.transaction() as c:
            c.execute(
                "UPDATE episodes SET show=?, title=?, slug=?, original=?, status=?, stage=?,"
                " error=?, probe=?, metadata=?, files=?, measurements=?, objects=?, results=?,"
                " updated_at=?, heartbeat=? WHERE id=?",
                (job.show, job.title, job.slug, job.original, job.status.value, job.stage,
                 job.error, json.dumps(job.probe.to_dict()) if job.probe else None,
                 job.metadata.model_dump_json(), *_payload(job), _now(), time.time(),
                 job.id),
            )

    def delete(self, job_id: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM episodes WHERE id=?", (job_id,))

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM episodes WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def by_sha256(self, sha256: str) -> Job | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM episodes WHERE sha256=?", (sha256,)
            ).fetchone()
        return _job(row) if row else None

    def find(self, prefix: str) -> list[Job]:
        """Episodes whose id starts with `prefix` (ids may be abbreviated on the command line)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM episodes WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at",
                (prefix.replace("%", "\\%").replace("_", "\\_") + "%",),
            ).fetchall()
        return [_job(r) for r in rows]

    def all(self, show: str | None = None) -> list[Job]:
        sql, args = "SELECT * FROM episodes", ()
        if show:
            sql, args = sql + " WHERE show=?", (show,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY created_at, id", args).fetchall()
        return [_job(r) for r in rows]

    def claim_next(self, statuses: tuple[Status, ...] = (Status.QUEUED, Status.PROCESSING),
                   ) -> Job | None:
        """Atomically take one episode that needs work and nobody (alive) is working on."""
        marks = ",".join("?" * len(statuses))
        with self.transaction() as c:
            rows = c.execute(
                f"SELECT id, owner, heartbeat FROM episodes WHERE status IN ({marks})"
                " ORDER BY created_at, id", [s.value for s in statuses],
            ).fetchall()
            for row in rows:
                if not self._free(row["owner"], row["heartbeat"]):
                    continue
                c.execute("UPDATE episodes SET owner=?, heartbeat=?, status=? WHERE id=?",
                          (self.owner, time.time(), Status.PROCESSING.value, row["id"]))
                break
            else:
                return None
        job = self.get(row["id"])
        return job

    def _free(self, owner: str | None, heartbeat: float | None) -> bool:
        """Unowned, or owned by a process that died (or, on another host, went silent).

        An episode owned by this very process is never free: another worker thread has it.
        """
        if not owner:
            return True
        if owner == self.owner:
            return False
        if not owner.startswith(socket.gethostname() + ":"):
            return time.time() - (heartbeat or 0) > LEASE_SECONDS
        return not owner_alive(owner)

    def release(self, job_id: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE episodes SET owner=NULL WHERE id=? AND owner=?",
                      (job_id, self.owner))

    # --- stages ---------------------------------------------------------------------------

    def stage_status(self, job_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM stage_runs WHERE episode_id=?", (job_id,)
            ).fetchall()
        return {r["stage"]: dict(r) for r in rows}

    def stage_started(self, job_id: str, stage: str) -> int:
        """Record an attempt; returns the attempt number (1-based)."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO stage_runs (episode_id, stage, status, attempts, started_at)"
                " VALUES (?,?,'running',1,?) ON CONFLICT(episode_id, stage) DO UPDATE SET"
                " status='running', attempts=attempts+1, started_at=excluded.started_at,"
                " error=NULL", (job_id, stage, _now()),
            )
            c.execute("UPDATE episodes SET stage=?, heartbeat=?, updated_at=? WHERE id=?",
                      (stage, time.time(), _now(), job_id))
            row = c.execute("SELECT attempts FROM stage_runs WHERE episode_id=? AND stage=?",
                            (job_id, stage)).fetchone()
        return int(row["attempts"])

    def stage_finished(self, job: Job, stage: str, seconds: float) -> None:
        """Save the job's new artifacts and mark the stage done in one transaction."""
        with self.transaction() as c:
            c.execute(
                "UPDATE episodes SET files=?, measurements=?, objects=?, results=?, title=?,"
                " updated_at=?, heartbeat=? WHERE id=?",
                (*_payload(job), job.title, _now(), time.time(), job.id),
            )
            c.execute("UPDATE stage_runs SET status='done', finished_at=?, seconds=?, error=NULL"
                      " WHERE episode_id=? AND stage=?", (_now(), seconds, job.id, stage))

    def stage_failed(self, job_id: str, stage: str, error: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE stage_runs SET status='failed', finished_at=?, error=?"
                      " WHERE episode_id=? AND stage=?", (_now(), error, job_id, stage))

    def stage_held(self, job_id: str, stage: str) -> None:
        """A gate stage that is waiting (for a reviewer): neither done nor failed."""
        with self.transaction() as c:
            c.execute("UPDATE stage_runs SET status='held', finished_at=? WHERE episode_id=?"
                      " AND stage=?", (_now(), job_id, stage))

    def reset_stages(self, job_id: str, stages: list[str]) -> None:
        with self.transaction() as c:
            c.executemany("DELETE FROM stage_runs WHERE episode_id=? AND stage=?",
                          [(job_id, s) for s in stages])

    # --- feeds ----------------------------------------------------------------------------
    # One row per (show, feed) holds what must never change once a feed exists: its
    # podcast:guid (apps and directories follow a feed by it, even when its URL moves) and the
    # unguessable token of internal shows; plus what was uploaded last, so `publish` knows
    # when a scheduled episode makes a feed out of date.

    def feed_identity(self, show: str, feed: str, url_for: Callable[[str], str],
                      guid_for: Callable[[str], str], new_token: Callable[[], str],
                      ) -> tuple[str, str]:
        """(guid, token) of a feed, assigned on first use and kept for good.

        `url_for(token)` gives the feed's URL; the guid is derived from the first URL only.
        The token is shared by all feeds of a show.
        """
        with self.transaction() as c:
            row = c.execute("SELECT guid, token FROM show_feeds WHERE show=? AND feed=?",
                            (show, feed)).fetchone()
            if row:
                return row["guid"], row["token"] or ""
            other = c.execute("SELECT token FROM show_feeds WHERE show=? AND token != ''"
                              " LIMIT 1", (show,)).fetchone()
            token = other["token"] if other else new_token()
            url = url_for(token)
            guid = guid_for(url)
            c.execute("INSERT INTO show_feeds (show, feed, guid, first_url, token, created_at)"
                      " VALUES (?,?,?,?,?,?)", (show, feed, guid, url, token, _now()))
            return guid, token

    def feed_published(self, show: str, feed: str, *, sha256: str, url: str,
                       items: list[str]) -> None:
        with self.transaction() as c:
            c.execute("UPDATE show_feeds SET sha256=?, url=?, items=?, published_at=?"
                      " WHERE show=? AND feed=?",
                      (sha256, url, json.dumps(items), _now(), show, feed))

    def feed_rows(self, show: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM show_feeds", ()
        if show:
            sql, args = sql + " WHERE show=?", (show,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY show, feed", args).fetchall()
        return [{**dict(r), "items": json.loads(r["items"])} for r in rows]

    # --- events ---------------------------------------------------------------------------

    def event(self, job_id: str | None, kind: str, message: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT INTO events (episode_id, at, kind, message) VALUES (?,?,?,?)",
                      (job_id, _now(), kind, message))

    def events(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT at, kind, message FROM events WHERE episode_id=? ORDER BY id", (job_id,)
            ).fetchall()
        return [dict(r) for r in rows]


    # --- reviews (the caption review audit trail) ---------------------------------------

    def add_review(self, job_id: str, reviewer: str, action: str, revision: int,
                   note: str = "", captions_sha256: str = "") -> None:
        """Append to the audit trail: who did what (approve, request-changes, edit) to which
        caption revision (and exact caption file), and when. Rows are never updated, and are
        deleted only with their episode."""
        with self.transaction() as c:
            c.execute("INSERT INTO reviews (episode_id, at, reviewer, action, revision, note,"
                      " captions_sha256) VALUES (?,?,?,?,?,?,?)",
                      (job_id, _now(), reviewer, action, revision, note, captions_sha256))

    def reviews(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT at, reviewer, action, revision, note, captions_sha256 FROM reviews"
                " WHERE episode_id=?"
                " ORDER BY id", (job_id,)).fetchall()
        return [dict(r) for r in rows]


def check_storable(job: Job) -> None:
    """Refuse a job that would not read back as it is: nothing goes into the database that
    turns into an error on every later command.

    pydantic writes infinity and NaN as null, which then fails validation on every read (one
    chapter `start: .inf` once made every later `run` and `status` crash); SQLite refuses
    text with lone surrogates (undecodable file names).
    """
    problems = []
    stored = (("metadata", job.metadata, EpisodeMetadata, job.metadata.model_dump_json()),
              ("results", job.results, Results, _payload(job)[3]))
    for name, value, model, text in stored:
        try:
            back = model.model_validate_json(text)
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


def _payload(job: Job) -> tuple[str, str, str, str]:
    """files, measurements, objects and results as the JSON the database keeps."""
    return (json.dumps({a.value: p for a, p in job.files.items()}),
            json.dumps(job.measurements),
            json.dumps({a.value: o.model_dump() for a, o in job.objects.items()}),
            job.results.model_dump_json(exclude_none=True))


def _job(row: sqlite3.Row) -> Job:
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
