"""Decode any recording to what Whisper consumes: 16 kHz mono float32 samples.

We run our own ffmpeg (the configured or bundled one) and hand arrays to the engines, so no
engine ever needs an `ffmpeg` on PATH, and both engines see exactly the same samples.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError

SAMPLE_RATE = 16_000


def decode_16k_mono(ffmpeg: str, path: Path) -> np.ndarray:
    """Return the first audio stream of `path` as float32 in [-1, 1] at 16 kHz, mono.

    The engines need the samples as one array (230 MB for an hour), but only once: ffmpeg's
    output is read in blocks into a single growing buffer that becomes the array without a
    copy, instead of a bytes object plus a copy of it (twice the memory, for an hour 460 MB).
    """
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
           "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        buffer = bytearray()
        with proc.stdout:
            while block := proc.stdout.read(1 << 20):
                buffer += block
        proc.wait()
        errors.seek(0)
        stderr = errors.read()
    if proc.returncode != 0:
        tail = "\n".join(stderr.decode("utf-8", "replace").strip().splitlines()[-5:])
        raise PipelineError(f"ffmpeg could not decode {path.name} for transcription "
                            f"(exit {proc.returncode}):\n{tail}\nCheck that the file is intact, "
                            "then run `learncast retry`")
    del buffer[len(buffer) // 4 * 4:]
    return np.frombuffer(buffer, dtype=np.float32)


def rms_dbfs(samples: np.ndarray) -> float:
    """Loudness of the whole signal in dBFS (−inf for digital silence)."""
    if samples.size == 0:
        return float("-inf")
    # In blocks: a float64 square of an hour at once would be another 460 MB.
    block = 1 << 20
    total = sum(float(np.dot(part, part)) for part in
                (samples[i:i + block].astype(np.float64) for i in range(0, samples.size, block)))
    rms = (total / samples.size) ** 0.5
    return 20 * np.log10(rms) if rms > 0 else float("-inf")
