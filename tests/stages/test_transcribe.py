"""The transcribe stage on real speech, silence and generated music."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.runner import call_stage
from pipeline.stages import transcribe
from tests.asr.fixtures import MakeCtx, MakeJob, normalise_text, references, wer


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


OSR_THREE = ("A gold ring will please most any girl. The long journey home took a year. "
             "She saw a cat in the neighbor's house.")


@pytest.mark.parametrize(("cut", "tail", "noise", "reference"), [
    # three sentences, then half a second of room tone after the last word
    ((0.0, 10.05), 0.5, "pink:a=0.004", OSR_THREE),
    # cut inside a word ("...found on the sa-"), 0.2 s of faint hiss: 407 s before gating
    ((1.0, 13.0), 0.2, "white:a=0.001", OSR_THREE + " A pink shell was found on the"),
])
def test_short_clip_with_trailing_room_tone_does_not_loop(
        cut: tuple[float, float], tail: float, noise: str, reference: str, asr_ctx: MakeCtx,
        make_job: MakeJob, make_media: object, shared_audio: Path, tmp_path: Path) -> None:
    ctx = asr_ctx()  # the default engine, openai-whisper
    clip = make_media(  # type: ignore[operator]
        tmp_path / "clip.wav", "-i", str(shared_audio / "OSR_us_000_0034_8k.wav"),
        "-f", "lavfi", "-i", f"anoisesrc=c={noise}:r=16000:d={tail}:seed=7",
        "-filter_complex", f"[0:a]aresample=16000,atrim={cut[0]}:{cut[1]},asetpts=N/SR/TB[s];"
        "[s][1:a]concat=n=2:v=0:a=1", "-ac", "1")
    job = call_stage(transcribe, make_job(ctx, clip), ctx)
    data = _load(ctx, job)
    assert wer(reference, str(data["text"])) <= 0.15
    decoding = data["decoding"]
    assert isinstance(decoding, dict) and decoding["chunks"] == 1
    # A clean decode takes about one step per token; a loop runs to the token cap at every
    # fallback temperature (hundreds of steps).
    assert decoding["decode_steps"] <= 2 * len(data["words"]) + 40  # type: ignore[arg-type]
    assert job.measurements["asr_loop_stops"] == decoding["repetition_stops"] \
        + decoding["budget_stops"]


def test_progress_counts_seconds_up_to_the_total(asr_ctx: MakeCtx, make_job: MakeJob,
                                                 make_media: object, shared_audio: Path,
                                                 tmp_path: Path) -> None:
    ctx = asr_ctx("faster-whisper", transcribe={"window_minutes": 0.5})
    events: list[tuple[float, float]] = []
    ctx.progress = lambda done, total: events.append((done, total))
    job = call_stage(transcribe, make_job(ctx, shared_audio / "longform_concat_16k.flac"), ctx)
    duration = _load(ctx, job)["duration_s"]
    assert events[0] == (0.0, pytest.approx(duration, abs=0.05))
    last_done, last_total = events[-1]  # the last one: all of it
    assert last_done == last_total == pytest.approx(duration, abs=0.001)
    done = [d for d, _ in events]
    assert done == sorted(done) and len(events) >= 6  # per chunk, over four windows
    assert all(d <= t for d, t in events)


def test_threads_are_the_workers_share_of_the_cores(asr_ctx: MakeCtx, make_job: MakeJob,
                                                    shared_audio: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.asr import threads

    ctx = asr_ctx("faster-whisper", runner={"workers": 2})
    threads._logged.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.asr.threads"):
        job = call_stage(transcribe, make_job(ctx, shared_audio / "jfk.flac"), ctx)
        call_stage(transcribe, make_job(ctx, shared_audio / "speechbrain" / "spk1_snt1.wav"), ctx)
    expected = max(1, threads.available_cores() // 2)
    assert job.measurements["asr_threads"] == _load(ctx, job)["threads"] == expected
    lines = [r.getMessage() for r in caplog.records if "ASR threads" in r.getMessage()]
    assert lines == [f"[transcribe] ASR threads: {expected} per worker x 2 worker(s) on "
                     f"{threads.available_cores()} core(s) (cores // workers)"]  # once
