"""Helpers for the soundbite, audiogram and suggested-chapter stage tests: an episode of real
speech taken through the finishing stages, with a transcript written from the shared
recording's reference (its parts' texts at their known offsets), so these tests need no
speech recogniser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.artifacts import Artifact
from pipeline.models import Job
from pipeline.sidecar import EpisodeMetadata
from pipeline.workspace import Context
from tests.stages.finishing import make_job, speech_at, upto

LONGFORM = "longform_concat_16k"


def reference_words(shared_audio: Path, *, offset: float = 0.0) -> list[dict[str, Any]]:
    """Words of the longform recording, spread evenly over each part's known span."""
    parts = json.loads((shared_audio / f"{LONGFORM}.json").read_text())["parts"]
    words = []
    for part in parts:
        tokens = part["text"].split()
        step = (part["end"] - part["start"]) / len(tokens)
        for i, token in enumerate(tokens):
            start = part["start"] + i * step - offset
            if start < 0:
                continue
            words.append({"word": token, "start": round(start, 3),
                          "end": round(start + step * 0.85, 3), "probability": 0.9})
    return words


def speech_episode(ctx: Context, shared_audio: Path, tmp: Path, *, job_id: str = "ep0001",
                   metadata: dict[str, Any] | None = None, last: str = "encode") -> Job:
    """The 104 s longform recording as an audio episode, through `last` (from trim), with a
    reference transcript in content time."""
    wav = speech_at(ctx.ffmpeg, shared_audio / f"{LONGFORM}.flac", tmp / "talk.wav", -20.0)
    meta = EpisodeMetadata.model_validate({"title": "Harvard and friends", **(metadata or {})})
    job = upto(ctx, make_job(ctx, wav, metadata=meta, job_id=job_id), "normalise")
    head = job.timeline.kept[0][0]
    words = reference_words(shared_audio, offset=head)
    dest = ctx.workspace.job_dir(job.id) / "transcript.json"
    dest.write_text(json.dumps({"language": "en", "duration_s": 104.0, "text": "",
                                "words": words, "segments": [
                                    {"start": words[0]["start"], "end": words[-1]["end"],
                                     "text": " ".join(w["word"] for w in words),
                                     "words": words}]}))
    job = job.with_file(Artifact.TRANSCRIPT, ctx.workspace.rel(dest))
    return upto(ctx, job, last, first="encode")
