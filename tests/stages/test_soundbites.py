"""Stage "soundbites": clips chosen from the transcript or given in the sidecar, cut from the
master, placed in deliverable time — re-measured from the files."""

from __future__ import annotations

from pathlib import Path

import pytest
from mutagen.id3 import ID3

from pipeline.artifacts import SOUNDBITES
from pipeline.runner import call_stage
from pipeline.stages import soundbites
from pipeline.workspace import Context
from tests.stages.finishing import add_artwork, duration, ebur128, with_settings
from tests.stages.highlights import reference_words, speech_episode


def test_chosen_soundbites_are_whole_sentences_at_the_episode_loudness(
        ctx: Context, shared_audio: Path, tmp_path: Path) -> None:
    add_artwork(ctx)
    job = speech_episode(ctx, shared_audio, tmp_path)
    out = call_stage(soundbites, job, ctx)
    bites = out.results.soundbites
    assert bites is not None and 1 <= len(bites) <= 3
    assert job.results.loudness is not None
    target = job.results.loudness.target_i  # the episode's own target
    head = job.timeline.kept[0][0]
    starts = {w["start"] for w in reference_words(shared_audio, offset=head)}
    for artifact, bite in zip(SOUNDBITES, bites, strict=False):
        path = ctx.workspace.abs(out.files[artifact])
        assert path.name == f"{job.slug}.soundbite{SOUNDBITES.index(artifact) + 1}.mp3"
        assert 15.0 <= bite.duration <= 60.0 and bite.origin == "transcript"
        assert duration(path) == pytest.approx(bite.duration, abs=0.1)
        got = ebur128(ctx.ffmpeg, path)
        assert abs(got["i"] - target) <= 1.0 and got["tp"] <= -1.0, got
        assert bite.loudness is not None and bite.loudness.integrated == pytest.approx(
            got["i"], abs=0.2)
        # it starts just before a word that begins a sentence (no intro: content time)
        first = min(s for s in starts if s >= bite.start)
        assert first - bite.start <= 0.3
        tags = ID3(path)
        assert str(tags["TIT2"]) == bite.title and str(tags["TALB"]) == "Learning Weekly"
        assert tags.getall("APIC")
    assert len(out.files) - len(job.files) == len(bites)
    assert out.measurements["soundbites"] == len(bites)


def test_sidecar_soundbites_are_placed_through_trim_and_intro(
        ctx: Context, shared_audio: Path, tmp_path: Path) -> None:
    job = speech_episode(ctx, shared_audio, tmp_path, metadata={"soundbites": [
        {"start": "0:36.5", "duration": 11, "title": "Ask not"}]})
    job = job.with_results(timeline=job.timeline.with_intro(4.0))
    out = call_stage(soundbites, job, ctx)
    (bite,) = out.results.soundbites or []
    expected = job.timeline.to_deliverable(36.5)
    assert bite.start == pytest.approx(expected, abs=0.01) and bite.title == "Ask not"
    assert bite.origin == "sidecar" and bite.duration == pytest.approx(11.0, abs=0.05)
    assert list(out.files).count(SOUNDBITES[0]) == 1 and SOUNDBITES[1] not in out.files


@pytest.mark.slow
def test_count_zero_makes_none_and_removes_old_clips(ctx: Context, shared_audio: Path,
                                                    tmp_path: Path) -> None:
    job = call_stage(soundbites, speech_episode(ctx, shared_audio, tmp_path), ctx)
    assert SOUNDBITES[0] in job.files
    off = with_settings(ctx, soundbites={"count": 0})
    again = call_stage(soundbites, job, off)
    assert not any(a in again.files for a in SOUNDBITES)
    assert again.results.soundbites == []
