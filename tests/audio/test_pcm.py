"""The shared streaming decode: blocks, early stop and failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.audio.pcm import stream_mono
from pipeline.errors import PipelineError


def test_stream_gives_the_whole_recording_in_blocks(make_media: Any, tmp_path: Path,
                                                    ffmpeg: str) -> None:
    src = make_media(tmp_path / "tone.flac", "-f", "lavfi", "-i", "sine=f=440:d=70:r=44100",
                     "-ac", "2")
    blocks = list(stream_mono(ffmpeg, src, 8000, block_samples=30_000, purpose="a test"))
    assert [len(b) for b in blocks[:-1]] == [30_000] * (len(blocks) - 1)
    assert sum(len(b) for b in blocks) / 8000 == pytest.approx(70.0, abs=0.01)
    assert all(b.dtype == np.float32 for b in blocks)


def _children() -> set[str]:
    found: set[str] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update((task / "children").read_text().split())
    return found


def test_stopping_early_leaves_no_ffmpeg_behind(make_media: Any, tmp_path: Path,
                                                ffmpeg: str) -> None:
    src = make_media(tmp_path / "long.flac", "-f", "lavfi", "-i", "anoisesrc=d=300:r=16000")
    before = _children()
    stream = stream_mono(ffmpeg, src, 16000, block_samples=16000, purpose="a test")
    next(stream)
    assert _children() - before  # ffmpeg is running
    stream.close()
    assert _children() == before


def test_undecodable_input_says_what_to_do(tmp_path: Path, ffmpeg: str) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("these are meeting notes, not audio\n" * 50)
    with pytest.raises(PipelineError,
                       match=r"(?s)could not decode notes\.wav for transcription.*learncast retry"):
        list(stream_mono(ffmpeg, bad, 16000, block_samples=16000, purpose="transcription"))
