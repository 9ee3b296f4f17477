"""Loudness normalisation, re-measured independently (ffmpeg ebur128) on the encoded files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import pytest
from mutagen.mp3 import MP3, BitrateMode

from bench.sound import section_spread
from bench.sound_inputs import alternating_voices, noisy_speech
from pipeline.audio.loudness import PROFILES
from pipeline.errors import PipelineError
from pipeline.runner import call_stage
from pipeline.stages import encode
from pipeline.state import StateDB
from pipeline.workspace import Context
from tests.conftest import MakeMedia, learncast
from tests.stages.finishing import ebur128, make_job, speech_at, upto, with_settings

#: Run again with the system ffmpeg by `make test-system-ffmpeg`.
pytestmark = pytest.mark.whole_recording


def _sample_rate(path: Path) -> int:
    with av.open(str(path)) as c:
        return int(c.streams.audio[0].sample_rate)


def _check_within(ffmpeg: str, path: Path, target: float, *, stream: str = "a:0",
                  tolerance: float = 1.0, ceiling: float = -1.0) -> dict[str, float]:
    got = ebur128(ffmpeg, path, stream)
    assert abs(got["i"] - target) <= tolerance, got
    assert got["tp"] <= ceiling, got
    return got


# name, target LUFS of the input, rate, channels, extra gain clipped away, expected profile
CASES = [
    ("quiet", -35.0, 44100, 2, 0.0, "apple-podcast"),
    ("loud-clipping", -6.0, 44100, 2, 0.0, "apple-podcast"),
    ("mono", -24.0, 44100, 1, 0.0, "apple-podcast-mono"),
    ("stereo-48k", -20.0, 48000, 2, 0.0, "apple-podcast"),
]


@pytest.mark.parametrize(("name", "lufs", "rate", "channels", "clip", "profile"), CASES,
                         ids=[c[0] for c in CASES])
def test_audio_reaches_profile_on_the_mp3(ctx: Context, shared_audio: Path, tmp_path: Path,
                                          name: str, lufs: float, rate: int, channels: int,
                                          clip: float, profile: str) -> None:
    src = speech_at(ctx.ffmpeg, shared_audio / "jfk.flac", tmp_path / f"{name}.wav", lufs,
                    rate=rate, channels=channels, clip_db=clip)
    measured_in = ebur128(ctx.ffmpeg, src)
    assert abs(measured_in["i"] - lufs) <= 1.5, measured_in  # the case is what it claims
    if name == "loud-clipping":
        assert measured_in["tp"] >= -0.1, measured_in  # peaks at 0 dBFS

    job = upto(ctx, make_job(ctx, src), "normalise")
    master = ctx.workspace.abs(job.files["master_audio"])
    assert master.suffix == ".flac" and _sample_rate(master) == 44100
    job = call_stage(encode, job, ctx)

    target = PROFILES[profile].integrated
    mp3 = ctx.workspace.abs(job.files["encoded_audio"])
    got = _check_within(ctx.ffmpeg, mp3, target)
    info = MP3(mp3).info
    assert info.sample_rate == 44100
    assert info.channels == channels
    assert info.bitrate_mode == BitrateMode.CBR  # LAME's Info header: constant bitrate
    assert abs(info.bitrate - (96000 if channels == 1 else 128000)) < 500

    loud = job.results.loudness
    assert loud is not None and loud.profile == profile
    assert abs(loud.before.integrated - measured_in["i"]) <= 0.3
    assert abs(loud.final["audio"].integrated - got["i"]) <= 0.3
    if name == "loud-clipping":
        assert loud.limited is False and loud.gain_db < -8


def test_peaky_quiet_recording_is_limited_and_recorded(ctx: Context, ffmpeg: str,
                                                       shared_audio: Path,
                                                       tmp_path: Path) -> None:
    """Quiet speech with a loud knock: +19 dB of gain would put the knock far over the
    ceiling, so a true-peak limiter is needed — and the episode says it was used."""
    speech = speech_at(ffmpeg, shared_audio / "jfk.flac", tmp_path / "quiet.wav", -35.0)
    knock = tmp_path / "knock.wav"
    # stereo (-ac 2) as the -16 LUFS target below assumes; ffmpeg 5.1's amix would mix the
    # mono knock and the stereo speech down to mono
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(speech), "-f", "lavfi", "-i",
                    "sine=frequency=1000:sample_rate=44100:duration=0.01,volume=5.6,"
                    "adelay=delays=5000:all=1", "-filter_complex",
                    "[0:a][1:a]amix=inputs=2:duration=first:normalize=0", "-ac", "2",
                    "-c:a", "pcm_s16le", str(knock)], check=True)
    job = upto(ctx, make_job(ctx, knock), "encode")
    loud = job.results.loudness
    assert loud is not None and loud.limited is True and loud.gain_db > 15, loud
    _check_within(ctx.ffmpeg, ctx.workspace.abs(job.files["encoded_audio"]), -16.0)


def test_telephone_8k_is_upsampled_explicitly(ctx: Context, shared_audio: Path) -> None:
    job = upto(ctx, make_job(ctx, shared_audio / "OSR_us_000_0034_8k.wav"), "normalise")
    master = ctx.workspace.abs(job.files["master_audio"])
    assert _sample_rate(master) == 44100  # never 192 kHz, never left at 8 kHz
    job = call_stage(encode, job, ctx)
    _check_within(ctx.ffmpeg, ctx.workspace.abs(job.files["encoded_audio"]),
                  PROFILES["apple-podcast-mono"].integrated)


def test_video_48k_both_deliverables_verified(ctx: Context, make_media: MakeMedia,
                                              tmp_path: Path) -> None:
    clip = make_media(tmp_path / "talk.mp4", "-f", "lavfi", "-i",
                      "testsrc2=size=320x240:rate=25:duration=6", "-f", "lavfi", "-i",
                      "sine=frequency=300:sample_rate=48000:duration=6,"
                      "volume='0.05+0.04*sin(2*PI*t)':eval=frame",
                      "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2")
    job = upto(ctx, make_job(ctx, clip), "normalise")
    assert _sample_rate(ctx.workspace.abs(job.files["master_audio"])) == 48000
    job = call_stage(encode, job, ctx)
    mp4 = ctx.workspace.abs(job.files["encoded_video"])
    _check_within(ctx.ffmpeg, mp4, -16.0)
    assert _sample_rate(mp4) == 48000
    _check_within(ctx.ffmpeg, ctx.workspace.abs(job.files["encoded_audio"]), -16.0)
    assert set(job.results.loudness.final) == {"audio", "video"}


@pytest.mark.parametrize(("profile", "target", "tolerance"),
                         [("ebu-r128", -23.0, 0.5), ("aes-speech", -18.0, 1.0)])
def test_other_profiles(ctx: Context, shared_audio: Path, tmp_path: Path, profile: str,
                        target: float, tolerance: float) -> None:
    ctx = with_settings(ctx, loudness={"profile": profile})
    src = speech_at(ctx.ffmpeg, shared_audio / "jfk.flac", tmp_path / "in.wav", -14.0)
    job = upto(ctx, make_job(ctx, src), "encode")
    _check_within(ctx.ffmpeg, ctx.workspace.abs(job.files["encoded_audio"]), target,
                  tolerance=tolerance)


def test_encode_fails_with_figures_when_off_target(ctx: Context, shared_audio: Path,
                                                   tmp_path: Path) -> None:
    """A master that was never normalised must not become a deliverable."""
    src = speech_at(ctx.ffmpeg, shared_audio / "jfk.flac", tmp_path / "in.wav", -30.0)
    job = make_job(ctx, src)  # a "master" that is the untouched source: normalise skipped
    job = job.with_file("master_audio", job.files["source_audio"])
    with pytest.raises(PipelineError, match=r"misses the apple-podcast loudness target: "
                                            r"measured -3\d\.\d LUFS"):
        call_stage(encode, job, ctx)
    assert not list(ctx.workspace.job_dir(job.id).glob("*.mp3"))


def test_silence_is_refused_with_advice(ctx: Context, make_media: MakeMedia,
                                        tmp_path: Path) -> None:
    src = make_media(tmp_path / "silent.wav", "-f", "lavfi", "-i",
                     "anullsrc=r=44100:cl=mono", "-t", "3")
    with pytest.raises(PipelineError, match="silent or nearly so"):
        upto(ctx, make_job(ctx, src), "normalise")


def test_leveler_is_on_by_default_and_the_episode_carries_a_sound_report(
        ctx: Context, shared_audio: Path, tmp_path: Path, db: StateDB) -> None:
    """A near and a far speaker, 10 dB apart: the default normalise stage levels them, the
    MP3 still meets the (mono) profile, and the report reaches `status --json`."""
    ctx = with_settings(ctx, trim={"enabled": False})  # sections in the input's own times
    built = alternating_voices(ctx.ffmpeg, shared_audio, tmp_path / "in", rounds=1)
    job = upto(ctx, make_job(ctx, built.path), "normalise")
    master = ctx.workspace.abs(job.files["master_audio"])
    assert section_spread(ctx.ffmpeg, master, built) <= 1.5
    job = call_stage(encode, job, ctx)
    _check_within(ctx.ffmpeg, ctx.workspace.abs(job.files["encoded_audio"]),
                  PROFILES["apple-podcast-mono"].integrated)
    sound = job.results.sound
    assert job.results.loudness.leveler is True and sound["leveler"]["enabled"]
    assert sound["section_spread_lu"]["after"] < sound["section_spread_lu"]["before"] - 5
    db.insert(job)
    status = learncast(ctx.workspace.root, "status", "--json")
    assert status.returncode == 0, status.stderr
    listed = next(e for e in json.loads(status.stdout) if e["id"] == job.id)
    assert listed["results"]["sound"] == sound


def test_noise_reduction_is_a_show_setting(ctx: Context, shared_audio: Path,
                                           tmp_path: Path) -> None:
    show = ctx.settings.show(None).model_dump()
    ctx = with_settings(ctx, shows=[{**show, "noise_reduction": "light", "hum": "off"}])
    built = noisy_speech(ctx.ffmpeg, shared_audio, tmp_path / "in", "pink", long=False)
    job = upto(ctx, make_job(ctx, built.path), "normalise")
    nr = job.results.sound["noise_reduction"]
    assert nr["mode"] == "light" and nr["broadband"] is True and nr["hum"] is None
    assert nr["afftdn"]["noise_reduction_db"] == 15.0


def test_leveler_off_keeps_the_linear_gain(ctx: Context, shared_audio: Path,
                                          tmp_path: Path) -> None:
    show = ctx.settings.show(None).model_dump()
    ctx = with_settings(ctx, loudness={"leveler": False}, shows=[{**show, "hum": "off"}],
                        trim={"enabled": False})
    built = alternating_voices(ctx.ffmpeg, shared_audio, tmp_path / "in", rounds=1)
    job = upto(ctx, make_job(ctx, built.path), "normalise")
    master = ctx.workspace.abs(job.files["master_audio"])
    assert section_spread(ctx.ffmpeg, master, built) >= 9.0
    loud = job.results.loudness
    assert loud is not None and loud.leveler is False and loud.limited is False
    # linear: the master's figures are the input's moved by the gain, not measured again
    assert loud.master.integrated == pytest.approx(loud.before.integrated + loud.gain_db,
                                                   abs=0.02)
    assert job.results.sound["leveler"]["gain_range_db"] == [0.0, 0.0]
