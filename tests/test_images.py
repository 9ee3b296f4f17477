"""Show artwork is measured from its header (pipeline/images.py), never decoded to find out
it is too big."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.feeds.validate import check_artwork
from pipeline.images import artwork_size
from tests.conftest import learncast
from tests.dropping import check_status, make_good


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header announces width x height, with almost no pixel data: what the
    header says is all a size check may read (decoding it would fail, or take gigabytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [12000, 20000])
def test_oversized_artwork_is_refused_from_its_header(tmp_path: Path, side: int) -> None:
    art = header_only_png(tmp_path / "art.png", side, side)
    with pytest.raises(PipelineError, match=r"ingest\.max_artwork_pixels") as caught:
        artwork_size(art, 6000 * 6000)
    assert "resize it" in str(caught.value)
    [problem] = [p for p in check_artwork(art) if "px a side" in p or "pixels" in p]
    assert "resize it" in problem


def test_artwork_within_the_limit_is_measured(tmp_path: Path) -> None:
    art = header_only_png(tmp_path / "art.png", 3000, 3000)
    assert artwork_size(art, 6000 * 6000) == (3000, 3000)


@pytest.mark.parametrize("side", [12000, 20000])
def test_a_run_with_oversized_artwork_fails_clearly_before_decoding_it(
        workspace_dir: Path, ffmpeg: str, side: int) -> None:
    """Through the CLI: the episode stops at package (before anything is uploaded) with a
    refusal that says what to do, not an "internal error"."""
    header_only_png(workspace_dir / "assets" / "artwork.png", side, side)
    make_good(ffmpeg, workspace_dir / "inbox")
    proc = learncast(workspace_dir, "run")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    [episode] = check_status(workspace_dir)
    assert (episode["status"], episode["stage"]) == ("failed", "package")
    assert "ingest.max_artwork_pixels" in episode["error"] and "resize it" in episode["error"]
    assert "internal error" not in episode["error"]
    assert not list((workspace_dir / "public").rglob("*.mp3")), "nothing was uploaded"
