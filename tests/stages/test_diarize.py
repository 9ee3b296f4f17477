"""The diarize stage: names from the sidecar or the show, the cheap paths, its file."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from bench.diarize import build_conversation
from pipeline.artifacts import Artifact
from pipeline.models import Job
from pipeline.runner import call_stage
from pipeline.sidecar import EpisodeMetadata
from pipeline.stages import diarize
from pipeline.workspace import Context, open_workspace
from tests.asr.fixtures import MakeJob


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.media import find_ffmpeg

    path, _ = build_conversation(find_ffmpeg(), ["spk1", "spk2"],
                                 tmp_path_factory.mktemp("talk") / "talk.wav", seed=15,
                                 turns=8)
    return path


def _ctx(ctx: Context, resources: dict[str, Any] | None = None, **overrides: Any) -> Context:
    return Context(workspace=open_workspace(ctx.workspace.root, overrides=overrides),
                   ffmpeg=ctx.ffmpeg, resources={} if resources is None else resources)


def _speakers(ctx: Context, job: Job) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ctx.workspace.abs(job.files[Artifact.SPEAKERS])
                                      .read_text(encoding="utf-8"))
    return data


def test_the_sidecar_names_the_voices_in_order(ctx: Context, make_job: MakeJob,
                                               conversation: Path) -> None:
    job = make_job(ctx, conversation)
    job = job.replace(metadata=EpisodeMetadata(speakers=["Ana", "Ben"]))
    done = call_stage(diarize, job, _ctx(ctx))
    result = done.results.speakers
    assert result is not None
    assert (result.count, result.names, result.source) == (2, ["Ana", "Ben"], "sidecar")
    data = _speakers(ctx, done)
    assert data["speakers"] == ["Ana", "Ben"] and data["source"] == "sidecar"
    turns = data["turns"]
    assert len(turns) >= 8 and turns[0]["speaker"] == 0
    assert {t["speaker"] for t in turns} == {0, 1}
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(turns))
    assert done.measurements["speakers"] == 2
    assert done.files[Artifact.SPEAKERS] == ctx.workspace.rel(
        ctx.workspace.job_dir(job.id) / "speakers.json")


def test_the_show_persons_name_the_voices_found(ctx: Context, make_job: MakeJob,
                                                conversation: Path) -> None:
    show = {"id": "learning-weekly", "title": "Learning Weekly",
            "persons": [{"name": "Dana Lee", "role": "host"}]}
    done = call_stage(diarize, make_job(ctx, conversation), _ctx(ctx, shows=[show]))
    result = done.results.speakers
    assert result is not None
    assert (result.count, result.names, result.source) == (2, ["Dana Lee", "Speaker 2"],
                                                           "estimated")


def test_one_name_or_switched_off_costs_nothing(ctx: Context, make_job: MakeJob,
                                               conversation: Path) -> None:
    resources: dict[str, Any] = {}
    job = make_job(ctx, conversation).replace(metadata=EpisodeMetadata(speakers=["Ana"]))
    single = call_stage(diarize, job, _ctx(ctx, resources))
    assert single.results.speakers is not None
    assert (single.results.speakers.count, single.results.speakers.source) == (1, "single")
    assert _speakers(ctx, single)["turns"] == []
    off = call_stage(diarize, make_job(ctx, conversation),
                     _ctx(ctx, resources, speakers={"enabled": False}))
    assert off.results.speakers is not None
    assert (off.results.speakers.count, off.results.speakers.source) == (0, "disabled")
    assert "voice_encoder" not in resources  # the encoder was never loaded


def test_no_words_heard_means_no_diarization(ctx: Context, make_job: MakeJob,
                                             conversation: Path) -> None:
    job = make_job(ctx, conversation)
    transcript = ctx.workspace.job_dir(job.id) / "transcript.json"
    transcript.write_text(json.dumps({"language": "en", "duration_s": 20.0, "text": "",
                                      "words": [], "segments": []}))
    job = job.with_file(Artifact.TRANSCRIPT, ctx.workspace.rel(transcript))
    resources: dict[str, Any] = {}
    done = call_stage(diarize, job, _ctx(ctx, resources))
    assert done.results.speakers is not None
    assert done.results.speakers.source == "no speech"
    assert "voice_encoder" not in resources
