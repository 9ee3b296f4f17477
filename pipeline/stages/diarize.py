"""Find who speaks when, so captions and transcripts can name the speaker.

Runs after transcribe on the same content-only master, so turn times are content times like
the transcript's. Separate from transcribe because it is a different job with its own
resource (the voice encoder) and its own switch: it can be turned off, redone alone after a
sidecar gives the speakers' names (`learncast retry ID --from diarize`), and a failure here
never costs a second transcription. It writes `speakers.json` (turns and names); the caption
stage labels words and cues from it.

How many speakers: the sidecar's `speakers` list gives the count and the names (in order of
first appearance); otherwise the count is estimated (pipeline/asr/diarize.py) and the show's
`[[shows.persons]]` name the first ones, `Speaker N` the rest. One voice, or one name given,
means no labels at all: most micro-learning clips have one presenter.
"""

from __future__ import annotations

import json
import logging
import time

from pipeline.artifacts import Artifact
from pipeline.asr import diarize as dz
from pipeline.asr.audio import stream_16k_mono
from pipeline.fsutil import atomic_write_text
from pipeline.models import Job, SpeakersResult
from pipeline.workspace import Context

log = logging.getLogger(__name__)

NEEDS = (Artifact.MASTER_AUDIO,)
USES = (Artifact.TRANSCRIPT,)
MAKES = (Artifact.SPEAKERS,)


def _heard_words(ctx: Context) -> bool:
    """Whether transcription heard any word (no words: nobody to name, skip the work)."""
    if not ctx.has_input(Artifact.TRANSCRIPT):
        return True
    try:
        data = json.loads(ctx.input(Artifact.TRANSCRIPT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return bool(data.get("words", True))


def _persons(job: Job, ctx: Context) -> list[str]:
    try:
        return [p.name for p in ctx.settings.show(job.show).persons]
    except KeyError:
        return []


def run(job: Job, ctx: Context) -> Job:
    settings = ctx.settings.speakers
    given = list(job.metadata.speakers)
    started = time.process_time()
    result: dz.Diarization | None = None
    if not settings.enabled:
        source = "disabled"
    elif len(given) == 1:
        source = "single"
    elif not _heard_words(ctx):
        source = "no speech"
    else:
        result = dz.diarize(
            stream_16k_mono(ctx.ffmpeg, ctx.input(Artifact.MASTER_AUDIO)),
            settings=dz.Settings(threshold=settings.threshold, ratio=settings.ratio,
                                 min_speaker_s=settings.min_speaker_s,
                                 max_speakers=settings.max_speakers,
                                 speakers=len(given) or None),
            resources=ctx.resources)
        source = "sidecar" if given else ("no speech" if not result.turns else "estimated")
    count = result.speakers if result else (1 if source == "single" else 0)
    names = dz.speaker_names(count, given or _persons(job, ctx))
    cpu = time.process_time() - started
    data = {"source": source, "speakers": names,
            "turns": [t.to_dict() for t in result.turns] if result else [],
            "speech_s": result.speech_s if result else None,
            "figures": result.figures if result else {}}
    dest = ctx.workspace.job_dir(job.id) / "speakers.json"
    atomic_write_text(dest, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    if count > 1:
        log.info("[diarize] %s: %d speakers (%s): %s; %.1f s CPU", job.id, count, source,
                 ", ".join(names), cpu)
    else:
        log.info("[diarize] %s: %s (%s); captions carry no speaker labels", job.id,
                 "one voice" if count == 1 else "no speech", source)
    return job.with_file(Artifact.SPEAKERS, ctx.workspace.rel(dest)).with_results(
        speakers=SpeakersResult(count=count, names=names if count > 1 else names[:count],
                                source=source, turns=len(data["turns"]))
    ).with_measurements(speakers=count, diarize_cpu_s=round(cpu, 3))
