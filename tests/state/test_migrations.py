"""The state database's schema history: a round-one database (typed results still in the
free-form measurements) is upgraded in place, once, and keeps working."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from pipeline.artifacts import Artifact
from pipeline.state import StateDB
from pipeline.state.migrations import LATEST

#: An episode row as round one wrote it (abridged from a real workspace's database).
LEGACY_MEASUREMENTS = {
    "source_duration_s": 35.59,
    "trim": {"floor_db": -62.1, "threshold_db": -50.1, "sound_found": True, "start_s": 1.2,
             "end_s": 33.4, "cut_head_s": 1.2, "cut_tail_s": 2.19, "removed_pauses": [],
             "duration_before_s": 35.59, "duration_after_s": 32.2,
             "video_path": "stream-copy"},
    "loudness": {"profile": "apple-podcast-mono", "target_i": -19.0, "target_tp": -1.0,
                 "tolerance_lu": 1.0, "before": {"integrated": -21.5, "true_peak": -2.0,
                                                 "lra": 2.4},
                 "master": {"integrated": -19.2, "true_peak": -2.0, "lra": 2.2},
                 "gain_db": 2.5, "limited": True, "ceiling_db": -2.0, "corrections": 0,
                 "master_measured": True, "sample_rate": 48000,
                 "final": {"audio": {"integrated": -19.6, "true_peak": -2.1, "lra": 2.2}}},
    "content_offset_s": 2.5, "audio_duration_s": 34.7, "encode": {"bumpers": ["intro"],
                                                                  "channels": 1},
    "asr_engine": "openai-whisper", "transcript_words": 78, "caption_profile": "learncast",
    "caption_revision": 3, "caption_cues": 9, "review_mode": "after-approval",
    "review_revision": 3, "reviewed_by": "Ana", "reviewed_at": "2026-11-20T10:00:00+00:00",
    "upload": {"uploaded": 7, "unchanged": 0, "bytes_sent": 1000, "superseded": ["a/b.vtt"]},
    "published_at": "2026-11-20T10:05:00+00:00",
    "feeds": {"audio": "http://localhost:8080/feeds/x/podcast.xml"},
}
ROUND_ONE = """
CREATE TABLE episodes (id TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, show TEXT NOT NULL,
  title TEXT NOT NULL, slug TEXT NOT NULL, source TEXT NOT NULL, original TEXT NOT NULL,
  status TEXT NOT NULL, stage TEXT, error TEXT, probe TEXT, metadata TEXT NOT NULL,
  files TEXT NOT NULL DEFAULT '{}', measurements TEXT NOT NULL DEFAULT '{}',
  objects TEXT NOT NULL DEFAULT '{}', owner TEXT, heartbeat REAL, created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL);
CREATE TABLE stage_runs (episode_id TEXT NOT NULL, stage TEXT NOT NULL, status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, started_at TEXT, finished_at TEXT, seconds REAL,
  error TEXT, PRIMARY KEY (episode_id, stage));
"""


def _round_one(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as c:
        c.executescript(ROUND_ONE)
        files = {"original": "archive/e1/a.mp4", "audio": "work/e1/a.mp3",
                 "vtt": "transcripts/x/a.vtt"}
        row = ("e1", "f" * 64, "x", "A", "a-e1", "a.mp4", "archive/e1/a.mp4", "published",
               None, None, None, "{}", json.dumps(files), json.dumps(LEGACY_MEASUREMENTS),
               "{}", "2026-11-20T09:00:00+00:00", "2026-11-20T10:05:00+00:00")
        c.execute("INSERT INTO episodes (id, sha256, show, title, slug, source, original,"
                  " status, stage, error, probe, metadata, files, measurements, objects,"
                  " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
        c.execute("INSERT INTO episodes (id, sha256, show, title, slug, source, original,"
                  " status, stage, metadata, created_at, updated_at) VALUES"
                  " ('r1', ?, 'x', 'R', 'r', 'r.pdf', 'failed/r.pdf', 'failed', 'ingest', '{}',"
                  " '2026-11-20', '2026-11-20')", ("e" * 64,))
        for stage in ("prepare", "encode", "caption", "chapters", "publish"):
            c.execute("INSERT INTO stage_runs VALUES ('e1', ?, 'done', 1, NULL, NULL, 1, NULL)",
                      (stage,))


def test_a_round_one_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "state" / "learncast.db"
    _round_one(path)
    db = StateDB(path)
    try:
        [job] = db.all()  # the door rejection was never an episode; it is gone
        r = job.results
        assert r.timeline is not None and r.timeline.kept == ((1.2, 33.4),)
        assert r.timeline.intro_s == 2.5 and r.timeline.duration(Artifact.AUDIO) == 34.7
        assert r.timeline.to_deliverable(10.0) == 2.5 + 8.8
        assert r.trim is not None and r.trim.video_path == "stream-copy"
        assert r.loudness is not None and r.loudness.final["audio"].integrated == -19.6
        assert r.encode is not None and r.encode.bumpers == ["intro"]
        assert r.captions is not None and r.captions.revision == 3
        assert r.review is not None and (r.review.reviewer, r.review.revision) == ("Ana", 3)
        assert r.upload is not None and r.upload.superseded == ["a/b.vtt"]
        assert r.publication is not None and r.publication.feeds["audio"].endswith(".xml")
        # figures stay figures; what became a result left `measurements`
        assert job.measurements["transcript_words"] == 78
        assert job.measurements["upload"] == {"uploaded": 7, "unchanged": 0, "bytes_sent": 1000}
        assert not {"trim", "loudness", "content_offset_s", "published_at", "reviewed_by",
                    "caption_revision", "feeds"} & set(job.measurements)
        # the MP3 was final already: it is also what the package stage would read
        assert job.files[Artifact.ENCODED_AUDIO] == job.files[Artifact.AUDIO]
        assert db.stage_status("e1")["package"]["status"] == "done"
        db.save(job)  # and it writes back in the new shape
        assert db.get("e1") == job
        # step 5: the notification outbox, learners and download counts exist
        assert db.notify_add([{"key": "k", "channel": "email", "recipient": "a@example.com",
                               "kind": "failed", "episode_id": "e1", "payload": "{}",
                               "status": "pending", "next_at": 0.0}]) == 1
        db.learner_add("l1", "x", "ana@example.com", "f" * 64)
        db.downloads_replace(["2026-11-21"], [("e1", "2026-11-21", "", 2)])
        assert [r["id"] for r in db.learners()] == ["l1"] and len(db.downloads()) == 1
    finally:
        db.close()
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == LATEST


def test_concurrent_first_opens_upgrade_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "learncast.db"
    _round_one(path)
    errors: list[BaseException] = []

    def open_and_read() -> None:
        try:
            db = StateDB(path)
            assert len(db.all()) == 1
            db.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = StateDB(path)
    try:
        [job] = db.all()
        assert job.results.captions is not None and job.results.captions.revision == 3
    finally:
        db.close()


def test_a_step_four_database_gains_the_reach_tables(tmp_path: Path) -> None:
    """A database written before the notification outbox, learners and download counts
    (schema 4) is taken to the latest schema on open and keeps its episodes."""
    path = tmp_path / "state" / "learncast.db"
    _round_one(path)
    StateDB(path).close()  # upgraded; now made to look as schema 4 left it
    with sqlite3.connect(path) as c:
        for table in ("notifications", "learners", "downloads"):
            c.execute(f"DROP TABLE {table}")
        c.execute("PRAGMA user_version = 4")
    db = StateDB(path)
    try:
        assert [j.id for j in db.all()] == ["e1"]
        assert db.notify_add([{"key": "k", "channel": "email", "recipient": "a@example.com",
                               "kind": "failed", "episode_id": "e1", "payload": "{}",
                               "status": "pending", "next_at": 0.0}]) == 1
        db.learner_add("l1", "x", "ana@example.com", "f" * 64)
        assert [r["id"] for r in db.learners()] == ["l1"] and db.downloads() == []
    finally:
        db.close()
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == LATEST == 5
