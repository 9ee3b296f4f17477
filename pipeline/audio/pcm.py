"""Decoded audio as a stream of sample blocks, never the whole recording.

Trim's level analysis, transcription and the review page's waveform all read audio this way:
one ffmpeg process decodes the first audio stream, mixed to mono and resampled, as float32 on
a pipe, and Python takes it a block at a time. An hour at 16 kHz would be 230 MB as one array.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.ffmpeg import Log, check_ran, popen


def stream_mono(ffmpeg: str, path: Path, rate: int, *, block_samples: int,
                purpose: str) -> Iterator[np.ndarray]:
    """`path`'s first audio stream as float32 mono blocks of `block_samples` (the last may be
    shorter). ffmpeg's failure is raised after the last block, naming `purpose`."""
    args = ["-i", str(path), "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(rate),
            "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    what = f"decoding {path.name} for {purpose}"
    with tempfile.TemporaryFile() as errors:  # a file: a full stderr pipe would stall ffmpeg
        proc = popen(ffmpeg, args, what=what, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        try:
            while data := proc.stdout.read(block_samples * 4):
                yield np.frombuffer(data, dtype=np.float32, count=len(data) // 4)
        finally:  # also when the consumer stops early
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        errors.seek(0)
        output = Log().read(errors)
    check_ran(ffmpeg, proc.returncode, output, what=what)
    if proc.returncode != 0:
        raise PipelineError(f"ffmpeg could not decode {path.name} for {purpose}: "
                            f"{output.first_error} (exit {proc.returncode}). Check that the "
                            "file is intact, then run `learncast retry`")
