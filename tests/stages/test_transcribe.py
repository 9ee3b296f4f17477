"""The transcribe stage on real speech, silence and generated music."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.runner import call_stage
from pipeline.stages import transcribe
from tests.asr.fixtures import MakeCtx, MakeJob, normalise_text, references


def _load(ctx_: object, job: object) -> dict[str, object]:
    path = ctx_.workspace.abs(job.files["transcript_words"])  # type: ignore[attr-defined]
    data: dict[str, object] = json.loads(path.read_text())
    return data


def test_transcribes_jfk_into_words_json(asr_ctx: MakeCtx, make_job: MakeJob,
                                         shared_audio: Path) -> None:
    ctx = asr_ctx()
    job = call_stage(transcribe, make_job(ctx, shared_audio / "jfk.flac"), ctx)
    data = _load(ctx, job)
    assert data["language"] == "en" and data["engine"] == "openai-whisper"
    assert data["model_source"] == "bundled"
    words = data["words"]
    assert isinstance(words, list) and len(words) == 22
    assert set(words[0]) == {"word", "start", "end", "probability"}
    reference = references(shared_audio)["jfk.flac"]["reference"]
    assert normalise_text(str(data["text"])) == normalise_text(reference)
    assert job.measurements["transcript_words"] == 22
    assert job.measurements["speech_detected"] is True
    assert job.measurements["asr_rtf"] > 0
    assert Path(job.files["transcript_words"]).parts[0] == "work"  # workspace-relative


def test_reads_its_declared_input_only(asr_ctx: MakeCtx, make_job: MakeJob,
                                       shared_audio: Path, tone: object,
                                       tmp_path: Path) -> None:
    """The runner hands transcribe the master; other audio the episode has is not its input."""
    ctx = asr_ctx("faster-whisper")
    beep = tone(tmp_path / "beep.wav", seconds=2.0)  # type: ignore[operator]
    job = make_job(ctx, beep, "source_audio")
    speech = make_job(ctx, shared_audio / "jfk.flac", "master_audio")
    job = job.with_file("master_audio", speech.files["master_audio"])
    job = job.with_file("trimmed_audio", job.files["source_audio"])
    job = call_stage(transcribe, job, ctx)
    assert job.measurements["transcript_words"] == 22
    assert job.results.transcription is not None
    assert job.results.transcription.engine == "faster-whisper"


def test_glossary_from_show_and_sidecar_prompts_and_corrects(
        asr_ctx: MakeCtx, make_job: MakeJob, shared_audio: Path) -> None:
    shows = [{"id": "tools", "title": "Tools Talk", "glossary": ["ComfyUI"]}]
    ctx = asr_ctx("faster-whisper", shows=shows)
    job = make_job(ctx, shared_audio / "fw_hotwords.mp3", show="tools",
                   glossary=["Stable Diffusion", "comfyui"])
    job = call_stage(transcribe, job, ctx)
    data = _load(ctx, job)
    assert "ComfyUI folder" in str(data["text"])
    glossary = data["glossary"]
    assert isinstance(glossary, dict)
    assert glossary["terms"] == ["ComfyUI", "Stable Diffusion"]  # de-duplicated, show first
    assert glossary["hits"] == {"ComfyUI": 2, "Stable Diffusion": 0}
    assert job.measurements["glossary_terms_found"] == 1


@pytest.mark.parametrize("engine", ["openai-whisper", "faster-whisper"])
def test_music_only_input_gives_an_empty_transcript_and_a_warning(
        engine: str, asr_ctx: MakeCtx, make_job: MakeJob, make_media: object,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx = asr_ctx(engine)
    music = make_media(  # type: ignore[operator]
        tmp_path / "music.flac",
        "-f", "lavfi", "-i", "sine=f=220:d=12", "-f", "lavfi", "-i", "sine=f=277:d=12",
        "-f", "lavfi", "-i", "sine=f=330:d=12", "-f", "lavfi", "-i",
        "anoisesrc=d=12:c=pink:a=0.05", "-filter_complex",
        "[0][1][2][3]amix=inputs=4,tremolo=f=4:d=0.7,aecho=0.8:0.7:200:0.3")
    with caplog.at_level(logging.WARNING):
        job = call_stage(transcribe, make_job(ctx, music), ctx)
    assert _load(ctx, job)["words"] == []
    assert job.measurements["speech_detected"] is False
    assert "no speech recognised" in caplog.text


def test_silent_input_skips_recognition(asr_ctx: MakeCtx, make_job: MakeJob,
                                        make_media: object, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    ctx = asr_ctx()
    silence = make_media(tmp_path / "silence.wav",  # type: ignore[operator]
                         "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "5")
    with caplog.at_level(logging.WARNING):
        job = call_stage(transcribe, make_job(ctx, silence), ctx)
    data = _load(ctx, job)
    assert data["words"] == [] and data["segments"] == [] and data["duration_s"] == 5.0
    assert data["model_source"] == "not loaded"
    assert "audio is silent" in caplog.text


def test_missing_audio_is_a_clear_error(asr_ctx: MakeCtx, make_job: MakeJob,
                                        shared_audio: Path) -> None:
    ctx = asr_ctx()
    job = make_job(ctx, shared_audio / "jfk.flac")
    ctx.workspace.abs(job.files["master_audio"]).unlink()
    with pytest.raises(PipelineError, match=r"needs the master_audio .* is missing\. Run "
                                            r"`learncast retry job\d+ --from normalise`"):
        call_stage(transcribe, job, ctx)
    with pytest.raises(PipelineError, match="it was never made"):
        call_stage(transcribe, job.replace(files={}), ctx)
