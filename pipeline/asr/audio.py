"""Decode any recording to what Whisper consumes: 16 kHz mono float32 samples.

We run our own ffmpeg (the configured or bundled one) and hand arrays to the engines, so no
engine ever needs an `ffmpeg` on PATH, and both engines see exactly the same samples.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError

SAMPLE_RATE = 16_000


def decode_16k_mono(ffmpeg: str, path: Path) -> np.ndarray:
    """Return the first audio stream of `path` as float32 in [-1, 1] at 16 kHz, mono."""
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
           "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:])
        raise PipelineError(f"ffmpeg could not decode {path.name} for transcription "
                            f"(exit {proc.returncode}):\n{tail}\nCheck that the file is intact, "
                            "then run `learncast retry`")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def rms_dbfs(samples: np.ndarray) -> float:
    """Loudness of the whole signal in dBFS (−inf for digital silence)."""
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")
