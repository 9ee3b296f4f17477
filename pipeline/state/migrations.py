"""The state database's schema history: one numbered step per change, applied in order.

The schema version lives in the database (`PRAGMA user_version`), and every step runs inside
the caller's write transaction, so two processes opening an old database at once upgrade it
exactly once. Step 2 moved what stages decide out of the free-form `measurements` into typed
`results` (the Timeline, trim, loudness, captions, review, publication...); databases written
before it are converted, not abandoned.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

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


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _columns(c: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in c.execute(f"PRAGMA table_info({table})")}


def _typed_results(c: sqlite3.Connection) -> None:
    """Step 2: `results` column; legacy measurements converted; door rejections dropped
    (a file rejected at ingest never becomes an episode: its note is in failed/)."""
    if "results" not in _columns(c, "episodes"):
        c.execute("ALTER TABLE episodes ADD COLUMN results TEXT NOT NULL DEFAULT '{}'")
    c.execute("DELETE FROM episodes WHERE status='failed' AND stage='ingest'")
    rows = c.execute("SELECT id, files, measurements, results FROM episodes").fetchall()
    for row in rows:
        files, figures = json.loads(row[1]), json.loads(row[2])
        if json.loads(row[3] or "{}") or not figures:
            continue
        results, figures, files = legacy_results(figures, files)
        c.execute("UPDATE episodes SET results=?, measurements=?, files=? WHERE id=?",
                  (results.model_dump_json(exclude_none=True), json.dumps(figures),
                   json.dumps(files), row[0]))
        # Episodes encoded before the package stage existed: their MP3/MP4 are already final.
        c.execute("INSERT OR IGNORE INTO stage_runs (episode_id, stage, status, attempts)"
                  " SELECT episode_id, 'package', 'done', 1 FROM stage_runs"
                  " WHERE episode_id=? AND stage='chapters' AND status='done'", (row[0],))


STEPS: list[Callable[[sqlite3.Connection], None]] = [_typed_results]
LATEST = len(STEPS) + 1


def migrate(c: sqlite3.Connection, schema: str) -> None:
    """Bring the database to LATEST inside the caller's transaction (BEGIN IMMEDIATE)."""
    version = c.execute("PRAGMA user_version").fetchone()[0]
    if version >= LATEST:
        return
    fresh = not c.execute("SELECT 1 FROM sqlite_master WHERE name='episodes'").fetchone()
    for statement in _statements(schema):  # executescript would commit the transaction
        c.execute(statement)
    if not fresh:
        for step in STEPS[max(version - 1, 0):]:
            step(c)
    c.execute(f"PRAGMA user_version={LATEST}")


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
