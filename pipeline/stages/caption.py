"""Captions and transcripts for the deliverables, plus a QA report for reviewers.

The transcript's word times are first checked against the content-only master (the audio the
words were recognised from, so the same content time): pauses found in the audio move word
edges onto the speech (`pipeline.captions.timing`). Cues are then cut from those words with
the configured profile and placed in the deliverables through the episode's Timeline (content
time + where the content starts after any intro bumper), so they line up with what learners
play. Every format is written atomically into `transcripts/<show>/<slug>.*`; the QA report
lists violations, low-confidence words, reading speeds and glossary hits, and its headline
figures go to `measurements`.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from pipeline.artifacts import Artifact
from pipeline.asr.types import Transcript
from pipeline.captions import speakers
from pipeline.captions.profiles import get_profile
from pipeline.captions.qa import report, segment_starts
from pipeline.captions.segmenter import segment
from pipeline.captions.timing import align_to_audio
from pipeline.captions.writers import WRITERS, Document
from pipeline.errors import PipelineError
from pipeline.fsutil import atomic_write_text
from pipeline.models import CaptionResult, Job
from pipeline.workspace import Context

log = logging.getLogger(__name__)

NEEDS = (Artifact.TRANSCRIPT,)
#: Word times are checked against the master when it is there; speaker turns name the cues.
USES = (Artifact.MASTER_AUDIO, Artifact.SPEAKERS)
MAKES = (*WRITERS, Artifact.QA)


def _language(job: Job, ctx: Context, recognised: str) -> str:
    """The show's BCP 47 tag (en-GB) when it agrees with what was recognised, else that."""
    try:
        configured = ctx.settings.show(job.show).language
    except KeyError:
        return recognised
    return configured if configured.split("-")[0] == recognised else recognised


def run(job: Job, ctx: Context) -> Job:
    ws = ctx.workspace
    stored = ctx.input(Artifact.TRANSCRIPT)
    try:
        transcript = Transcript.from_dict(json.loads(stored.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{ws.rel(stored)} is not a valid transcript ({exc}); run "
                            f"`learncast retry {job.id} --from transcribe`") from exc
    words = transcript.words
    aligned = ctx.has_input(Artifact.MASTER_AUDIO)
    if aligned:
        words = align_to_audio(words, ctx.ffmpeg, ctx.input(Artifact.MASTER_AUDIO))
    place = job.timeline.content_to_deliverable
    labelled = speakers.label(words, ctx.inputs.get(Artifact.SPEAKERS))
    words = [dataclasses.replace(w, start=place(w.start), end=place(w.end)) for w in labelled]
    profile = get_profile(ctx.settings.captions.profile)
    chapters = job.results.chapters or []
    cues = speakers.assign(segment(words, profile, breaks=[
        *(m.start for m in chapters if m.start > 0), *speakers.changes(words)], aligned=aligned))
    qa = report(cues, words, profile, low_confidence=ctx.settings.captions.low_confidence,
                glossary=transcript.info.get("glossary"),
                dropped=transcript.info.get("dropped_segments"),
                segment_starts=segment_starts(transcript.segments))
    language = _language(job, ctx, transcript.language)
    doc = Document(title=job.title, language=language, cues=cues, words=words,
                   info={"engine": transcript.info.get("engine"),
                         "model": transcript.info.get("model"),
                         "offset_s": job.timeline.intro_s})
    folder = ws.transcripts / job.show
    for artifact, writer in WRITERS.items():
        path = folder / f"{job.slug}.{writer.suffix}"
        atomic_write_text(path, writer.render(doc))
        job = job.with_file(artifact, ws.rel(path))
    if job.results.sound is not None:  # the normalise stage's sound report, for the producer
        qa["sound"] = job.results.sound
    qa_path = folder / f"{job.slug}.qa.json"
    atomic_write_text(qa_path, json.dumps(qa, ensure_ascii=False, indent=1) + "\n")
    for issue in qa["violations"]:
        log.warning("[caption] %s cue %d (%.1f s): %s %s exceeds %s", job.id, issue["cue"],
                    issue["start"], issue["rule"], issue["value"], issue["limit"])
    if not cues:
        log.warning("[caption] %s: no speech, so the captions are empty", job.id)
    speed = qa["reading_speed"]["cps"]
    glossary = qa["glossary"]
    # A re-run after reviewers' edits starts a new revision, so approvals never carry over.
    previous = job.results.captions
    result = CaptionResult(profile=profile.name, language=language,
                           revision=previous.revision + 1 if previous else 1)
    return job.with_file(Artifact.QA, ws.rel(qa_path)).with_results(
        captions=result).with_measurements(
        caption_cues=len(cues),
        caption_violations=len(qa["violations"]),
        caption_warnings=len(qa["warnings"]),
        caption_conformance=qa["conformance"],
        low_confidence_words=len(qa["low_confidence_words"]),
        reading_cps_median=speed.get("median", 0.0),
        reading_cps_max=speed.get("max", 0.0),
        glossary_hits=sum(glossary.get("hits", {}).values()) if glossary else 0,
    )
