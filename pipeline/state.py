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

from pipeline.fsutil import pid_alive
from pipeline.media import Probe
from pipeline.models import Job, Status
from pipeline.sidecar import EpisodeMetadata

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
    progress_done REAL,
    progress_total REAL,
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
                self._conn.executescript(SCHEMA)
                self._add_columns("stage_runs", {"progress_done": "REAL",
                                                 "progress_total": "REAL"})
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self._conn.close()

    def _add_columns(self, table: str, columns: dict[str, str]) -> None:
        """Columns added after a database was created (CREATE TABLE IF NOT EXISTS skips an
        existing table): added once, so databases of earlier versions keep working."""
        have = {r["name"] for r in self._conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: take the write lock up front so read-then-write cannot race."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- episodes -------------------------------------------------------------------------

    def insert(self, job: Job) -> None:
        now = _now()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO episodes (id, sha256, show, title, slug, source, original, status,"
                " stage, error, probe, metadata, files, measurements, objects, created_at,"
                " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.sha256, job.show, job.title, job.slug, job.source, job.original,
                 job.status.value, job.stage, job.error,
                 json.dumps(job.probe.to_dict()) if job.probe else None,
                 job.metadata.model_dump_json(), json.dumps(job.files),
                 json.dumps(job.measurements), json.dumps(job.objects),
                 job.created_at.isoformat(), now),
            )

    def save(self, job: Job) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE episodes SET show=?, title=?, slug=?, original=?, status=?, stage=?,"
                " error=?, probe=?, metadata=?, files=?, measurements=?, objects=?,"
                " updated_at=?, heartbeat=? WHERE id=?",
                (job.show, job.title, job.slug, job.original, job.status.value, job.stage,
                 job.error, json.dumps(job.probe.to_dict()) if job.probe else None,
                 job.metadata.model_dump_json(), json.dumps(job.files),
                 json.dumps(job.measurements), json.dumps(job.objects), _now(), time.time(),
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
                " error=NULL, progress_done=NULL, progress_total=NULL", (job_id, stage, _now()),
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
                "UPDATE episodes SET files=?, measurements=?, objects=?, title=?, updated_at=?,"
                " heartbeat=? WHERE id=?",
                (json.dumps(job.files), json.dumps(job.measurements), json.dumps(job.objects),
                 job.title, _now(), time.time(), job.id),
            )
            c.execute("UPDATE stage_runs SET status='done', finished_at=?, seconds=?, error=NULL"
                      " WHERE episode_id=? AND stage=?", (_now(), seconds, job.id, stage))

    def stage_progress(self, job_id: str, stage: str, done: float, total: float) -> None:
        """How far a running stage got (transcribe: seconds of audio); also a heartbeat."""
        with self.transaction() as c:
            c.execute("UPDATE stage_runs SET progress_done=?, progress_total=? WHERE"
                      " episode_id=? AND stage=?", (done, total, job_id, stage))
            c.execute("UPDATE episodes SET heartbeat=? WHERE id=?", (time.time(), job_id))

    def running_progress(self) -> dict[str, tuple[str, float, float]]:
        """{episode id: (stage, done, total)} for every running stage that reported one."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT episode_id, stage, progress_done, progress_total FROM stage_runs"
                " WHERE status='running' AND progress_total IS NOT NULL").fetchall()
        return {r["episode_id"]: (r["stage"], float(r["progress_done"]),
                                  float(r["progress_total"])) for r in rows}

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


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"], sha256=row["sha256"], show=row["show"], title=row["title"],
        slug=row["slug"], source=row["source"], original=row["original"],
        probe=Probe.from_dict(json.loads(row["probe"])) if row["probe"] else None,
        metadata=EpisodeMetadata.model_validate_json(row["metadata"]),
        status=Status(row["status"]), stage=row["stage"], error=row["error"],
        files=json.loads(row["files"]), measurements=json.loads(row["measurements"]),
        objects=json.loads(row["objects"]),
        created_at=dt.datetime.fromisoformat(row["created_at"]),
    )
