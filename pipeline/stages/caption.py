"""Captions and transcripts for the deliverables, plus a QA report for reviewers.

Cues are cut from the transcript's word timestamps with the configured profile, then shifted by
`content_offset_s` (where the content starts in the encoded audio/video, after any intro
bumper), so they line up with what learners play. Every format is written atomically into
`transcripts/<show>/<slug>.*`; the QA report lists violations, low-confidence words, reading
speeds and glossary hits, and its headline figures go to `measurements`.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from pipeline.asr.types import Transcript
from pipeline.captions.profiles import get_profile
from pipeline.captions.qa import report
from pipeline.captions.segmenter import segment
from pipeline.captions.writers import WRITERS, Document
from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_write_text
from pipeline.models import Job
from pipeline.workspace import Context

log = logging.getLogger(__name__)


def _language(job: Job, ctx: Context, recognised: str) -> str:
    """The show's BCP 47 tag (en-GB) when it agrees with what was recognised, else that."""
    try:
        configured = ctx.settings.show(job.show).language
    except KeyError:
        return recognised
    return configured if configured.split("-")[0] == recognised else recognised


def run(job: Job, ctx: Context) -> Job:
    ws = ctx.workspace
    stored = job.files.get("transcript_words")
    if not stored or not ws.abs(stored).exists():
        raise PipelineError(f"episode {job.id} has no transcript to caption; run "
                            f"`learncast retry {job.id}` so the transcribe stage runs again")
    try:
        transcript = Transcript.from_dict(json.loads(ws.abs(stored).read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{stored} is not a valid transcript ({exc}); delete it and run "
                            f"`learncast retry {job.id}`") from exc
    offset = float(job.measurements.get("content_offset_s", 0.0) or 0.0)
    words = [dataclasses.replace(w, start=w.start + offset, end=w.end + offset)
             for w in transcript.words]
    profile = get_profile(ctx.settings.captions.profile)
    cues = segment(words, profile)
    qa = report(cues, words, profile, low_confidence=ctx.settings.captions.low_confidence,
                glossary=transcript.info.get("glossary"),
                dropped=transcript.info.get("dropped_segments"))
    doc = Document(title=job.title, language=_language(job, ctx, transcript.language),
                   cues=cues, words=words,
                   info={"engine": transcript.info.get("engine"),
                         "model": transcript.info.get("model"), "offset_s": offset})
    folder = ws.transcripts / job.show
    for name, writer in WRITERS.items():
        path = folder / f"{job.slug}.{writer.suffix}"
        atomic_write_text(path, writer.render(doc))
        job = job.with_file(name, ws.rel(path))
    if "sound" in job.measurements:  # the normalise stage's sound report, for the producer
        qa["sound"] = job.measurements["sound"]
    qa_path = folder / f"{job.slug}.qa.json"
    atomic_write_text(qa_path, json.dumps(qa, ensure_ascii=False, indent=1) + "\n")
    for issue in qa["violations"]:
        log.warning("[caption] %s cue %d (%.1f s): %s %s exceeds %s", job.id, issue["cue"],
                    issue["start"], issue["rule"], issue["value"], issue["limit"])
    if not cues:
        log.warning("[caption] %s: no speech, so the captions are empty", job.id)
    speed = qa["reading_speed"]["cps"]
    glossary = qa["glossary"]
    return job.with_file("qa", ws.rel(qa_path)).with_measurements(
        caption_profile=profile.name,
        caption_cues=len(cues),
        caption_violations=len(qa["violations"]),
        caption_warnings=len(qa["warnings"]),
        caption_conformance=qa["conformance"],
        low_confidence_words=len(qa["low_confidence_words"]),
        reading_cps_median=speed.get("median", 0.0),
        reading_cps_max=speed.get("max", 0.0),
        glossary_hits=sum(glossary.get("hits", {}).values()) if glossary else 0,
    )
