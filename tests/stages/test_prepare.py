from __future__ import annotations

from pathlib import Path

import av
import pytest

from pipeline import media
from pipeline.runner import process_inbox
from pipeline.state import StateDB
from pipeline.workspace import Context

#: Run again with the system ffmpeg by `make test-system-ffmpeg`.
pytestmark = pytest.mark.whole_recording


def test_prepare_extracts_lossless_audio_and_downmixes_surround(
        ctx: Context, db: StateDB, make_media) -> None:
    make_media(ctx.workspace.inbox / "surround.mkv", "-f", "lavfi", "-i",
               "sine=frequency=300:duration=2.5:sample_rate=48000", "-ac", "6")
    report = process_inbox(ctx)
    [outcome] = report.processed
    job = db.get(outcome.job_id)
    assert job is not None and job.probe is not None
    assert job.probe.audio.channels == 6
    flac = ctx.workspace.abs(job.files["source_audio"])
    p = media.probe(flac)
    assert (p.container, p.audio.channels, p.audio.sample_rate) == ("flac", 2, 48000)
    assert abs(p.duration_s - 2.5) < 0.05
    # the original is untouched in the archive
    assert Path(ctx.workspace.abs(job.original)).stat().st_size == job.probe.size_bytes


def test_working_copy_of_an_mp3_has_full_size_flac_blocks(
        ctx: Context, db: StateDB, make_media) -> None:
    """An MP3's first decoded frame is what is left after the encoder delay (47 samples with
    LAME); ffmpeg's FLAC encoder used it as the block size for the whole copy, which made every
    later stage decode 1.7 million blocks for a 30-minute podcast."""
    make_media(ctx.workspace.inbox / "podcast.mp3", "-f", "lavfi", "-i",
               "sine=frequency=300:duration=3:sample_rate=44100", "-c:a", "libmp3lame")
    [outcome] = process_inbox(ctx).processed
    job = db.get(outcome.job_id)
    assert job is not None
    with av.open(str(ctx.workspace.abs(job.files["source_audio"]))) as flac:
        blocks = [packet.duration for packet in flac.demux(flac.streams.audio[0])
                  if packet.duration]
    assert set(blocks[:-1]) == {4608}, blocks[:5]
    assert abs(sum(blocks) / 44100 - 3.0) < 0.05
