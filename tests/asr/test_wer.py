"""Accuracy on longer real speech, for both engines (slow: minutes on shared CPUs)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.stages import caption, transcribe
from tests.asr.fixtures import MakeCtx, MakeJob, references, wer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("engine", ["openai-whisper", "faster-whisper"])
def test_longform_wer_conformance_and_timestamps(engine: str, asr_ctx: MakeCtx,
                                                 make_job: MakeJob, shared_audio: Path,
                                                 webvtt_validate: Any) -> None:
    name = "longform_concat_16k.flac"
    ctx = asr_ctx(engine)
    job = caption.run(transcribe.run(make_job(ctx, shared_audio / name), ctx), ctx)
    data = json.loads(ctx.workspace.abs(job.files["transcript_words"]).read_text())
    words = data["words"]
    text = " ".join(w["word"] for w in words)
    reference = json.loads((shared_audio / "longform_concat_16k.json").read_text())["reference"]
    assert wer(reference, text) <= 0.10
    duration = references(shared_audio)[name]["duration_s"]
    for prev, word in itertools.pairwise(words):
        assert prev["start"] <= word["start"] and prev["end"] <= word["start"] + 1e-6
    assert words[0]["start"] >= 0 and words[-1]["end"] <= duration + 0.01
    assert webvtt_validate(ctx.workspace.abs(job.files["vtt"]))["errors"] == []
    qa = json.loads(ctx.workspace.abs(job.files["qa"]).read_text())
    assert qa["violations"] == [] and qa["conformance"] == 1.0
