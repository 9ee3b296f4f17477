"""The state database's schema history: one numbered step per change, applied in order.

One history for SQLite and PostgreSQL: the tables are defined once (`pipeline.state.schema`,
SQLAlchemy Core renders them for each dialect) and each step is written with Core, so it runs
on both. The version lives in the database (SQLite: `PRAGMA user_version`, as round two wrote
it; PostgreSQL: the one-row table `learncast_schema`). Every step runs inside one transaction
that first takes the database's write lock (SQLite: BEGIN IMMEDIATE, taken by the store;
PostgreSQL: a transaction-scoped advisory lock; its DDL is transactional), so processes that
start at the same moment upgrade an old database exactly once and never see it half-done.

Step 2 moved what stages decide out of the free-form `measurements` into typed `results`
(the Timeline, trim, loudness, captions, review, publication...); databases written before it
are converted, not abandoned. Step 3 added stage leases and working copies (distributed mode).
Step 5 added the notification outbox, learners and download counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, inspect, text

from pipeline.artifacts import Artifact, Timeline
from pipeline.models import (
    CaptionResult,
    EncodeResult,
    LoudnessResult,
    PublishRecord,
    Results,
    ReviewRecord,
    TranscriptionResult,
    TrimResult,
    UploadResult,
)
from pipeline.state import schema

#: pg_advisory_xact_lock key of schema migrations ("learncast" in ASCII, folded to 63 bits).
PG_MIGRATION_LOCK = 0x6C6561726E636173


def _columns(c: Connection, table: str) -> set[str]:
    return {col["name"] for col in inspect(c).get_columns(table)}


def _typed_results(c: Connection) -> None:
    """Step 2: `results` column; legacy measurements converted; door rejections dropped
    (a file rejected at ingest never becomes an episode: its note is in failed/)."""
    if "results" not in _columns(c, "episodes"):
        c.execute(text("ALTER TABLE episodes ADD COLUMN results TEXT NOT NULL DEFAULT '{}'"))
    c.execute(text("DELETE FROM episodes WHERE status='failed' AND stage='ingest'"))
    rows = c.execute(text("SELECT id, files, measurements, results FROM episodes")).fetchall()
    for row in rows:
        files, figures = json.loads(row[1]), json.loads(row[2])
        if json.loads(row[3] or "{}") or not figures:
            continue
        results, figures, files = legacy_results(figures, files)
        c.execute(text("UPDATE episodes SET results=:r, measurements=:m, files=:f WHERE id=:id"),
                  {"r": results.model_dump_json(exclude_none=True), "m": json.dumps(figures),
                   "f": json.dumps(files), "id": row[0]})
        # Episodes encoded before the package stage existed: their MP3/MP4 are already final.
        done = c.execute(text("SELECT 1 FROM stage_runs WHERE episode_id=:id AND"
                              " stage='chapters' AND status='done'"), {"id": row[0]}).first()
        packaged = c.execute(text("SELECT 1 FROM stage_runs WHERE episode_id=:id AND"
                                  " stage='package'"), {"id": row[0]}).first()
        if done and not packaged:
            c.execute(text("INSERT INTO stage_runs (episode_id, stage, status, attempts)"
                           " VALUES (:id, 'package', 'done', 1)"), {"id": row[0]})


def _leases_and_working_copies(c: Connection) -> None:
    """Step 3: per-stage leases (a distributed worker owns one stage, not the episode) and
    the table of working copies that travel through the storage backend."""
    have = _columns(c, "stage_runs")
    for name, kind in (("owner", "TEXT"), ("heartbeat", "DOUBLE PRECISION")):
        if name not in have:
            c.execute(text(f"ALTER TABLE stage_runs ADD COLUMN {name} {kind}"))
    schema.working_copies.create(c, checkfirst=True)


def _stage_progress(c: Connection) -> None:
    """Step 4: how far a running stage got, for `learncast status` during transcription."""
    have = _columns(c, "stage_runs")
    for name in ("progress_done", "progress_total"):
        if name not in have:
            c.execute(text(f"ALTER TABLE stage_runs ADD COLUMN {name} DOUBLE PRECISION"))


def _reach(c: Connection) -> None:
    """Step 5: the notification outbox, learners of private shows, download counts."""
    for table in (schema.notifications, schema.learners, schema.downloads):
        table.create(c, checkfirst=True)


STEPS: list[Callable[[Connection], None]] = [_typed_results, _leases_and_working_copies,
                                              _stage_progress, _reach]
LATEST = len(STEPS) + 1


def schema_version(c: Connection) -> int:
    """The version a database is at (0: empty, or a round-one SQLite database)."""
    if c.dialect.name == "sqlite":
        return int(c.exec_driver_sql("PRAGMA user_version").scalar() or 0)
    if not inspect(c).has_table("learncast_schema"):
        return 0
    return int(c.execute(text("SELECT version FROM learncast_schema")).scalar() or 0)


def _set_version(c: Connection, version: int) -> None:
    if c.dialect.name == "sqlite":
        c.exec_driver_sql(f"PRAGMA user_version={int(version)}")
        return
    c.execute(text("CREATE TABLE IF NOT EXISTS learncast_schema (version INTEGER NOT NULL)"))
    c.execute(text("DELETE FROM learncast_schema"))
    c.execute(text("INSERT INTO learncast_schema (version) VALUES (:v)"), {"v": version})


def migrate(c: Connection) -> tuple[int, int]:
    """Bring the database to LATEST inside the caller's transaction; (before, after).

    The caller's transaction holds SQLite's write lock (BEGIN IMMEDIATE); on PostgreSQL the
    advisory lock taken here serialises concurrent migrators until the transaction ends.
    """
    if c.dialect.name == "postgresql":
        c.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
    version = schema_version(c)
    if version >= LATEST:
        return version, version
    fresh = not inspect(c).has_table("episodes")
    schema.metadata.create_all(c, checkfirst=True)
    if not fresh:
        for step in STEPS[max(version - 1, 0):]:
            step(c)
        for table in schema.metadata.tables.values():
            for index in table.indexes:
                index.create(c, checkfirst=True)
    _set_version(c, LATEST)
    return version, LATEST


def legacy_results(figures: dict[str, Any], files: dict[str, str],
                   ) -> tuple[Results, dict[str, Any], dict[str, str]]:
    """Split a round-one `measurements` dict into typed results and the figures that stay."""
    m = dict(figures)
    trim, loud, encode = m.pop("trim", None), m.pop("loudness", None), m.pop("encode", None)
    results: dict[str, Any] = {}
    if isinstance(trim, dict) and "start_s" in trim:
        bounds = [float(trim["start_s"])]
        for a, b in trim.get("removed_pauses", []):
            bounds += [float(a), float(b)]
        bounds.append(float(trim["end_s"]))
        kept = tuple(zip(bounds[::2], bounds[1::2], strict=True))
        source = float(trim.get("duration_before_s") or m.get("source_duration_s") or bounds[-1])
        results["timeline"] = Timeline(source_duration_s=source, kept=kept)
        results["trim"] = TrimResult.model_validate(trim)
    offset = m.pop("content_offset_s", None)
    durations = {k: float(m.pop(f"{k}_duration_s")) for k in ("audio", "video")
                 if isinstance(m.get(f"{k}_duration_s"), int | float)}
    if "timeline" not in results and (offset is not None or durations):
        results["timeline"] = Timeline.untrimmed(float(m.get("source_duration_s") or 0.0))
    if "timeline" in results:
        results["timeline"] = results["timeline"].with_intro(float(offset or 0.0)) \
            .with_durations(**durations)
    if isinstance(loud, dict) and "before" in loud:
        results["loudness"] = LoudnessResult.model_validate(loud)
    if isinstance(encode, dict):
        results["encode"] = EncodeResult.model_validate({"channels": 2, **encode})
    engine = m.pop("asr_engine", None)
    if engine:
        results["transcription"] = TranscriptionResult(engine=engine, model="", model_source="",
                                                       language="")
    profile, revision = m.pop("caption_profile", None), m.pop("caption_revision", None)
    if profile:
        results["captions"] = CaptionResult(profile=profile, language="",
                                            revision=int(revision or 1))
    mode = m.pop("review_mode", None)
    review = {k: m.pop(k, None) for k in ("review_revision", "reviewed_by", "reviewed_at")}
    if mode:
        results["review"] = ReviewRecord(mode=mode, revision=review["review_revision"],
                                         reviewer=review["reviewed_by"],
                                         at=review["reviewed_at"])
    upload = m.get("upload")
    if isinstance(upload, dict) and "superseded" in upload:
        results["upload"] = UploadResult(superseded=upload["superseded"])
        m["upload"] = {k: v for k, v in upload.items() if k != "superseded"}
    published, feeds = m.pop("published_at", None), m.pop("feeds", None)
    if published:
        results["publication"] = PublishRecord.model_validate(
            {"published_at": published, "feeds": feeds or {}})
    files = dict(files)
    files.pop("sidecar", None)
    for final, encoded in ((Artifact.AUDIO, Artifact.ENCODED_AUDIO),
                           (Artifact.VIDEO, Artifact.ENCODED_VIDEO)):
        if final.value in files and encoded.value not in files:
            files[encoded.value] = files[final.value]
    return Results.model_validate(results), m, files
