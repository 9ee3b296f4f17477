"""Decode any recording to what Whisper consumes: 16 kHz mono float32 samples, streamed.

We run our own ffmpeg (the configured or bundled one) and hand arrays to the engines, so no
engine ever needs an `ffmpeg` on PATH, and both engines see exactly the same samples. Long
recordings reach the engine in windows cut at quiet moments (`windows`), so the memory a
transcription needs does not grow with the length of the episode.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from pipeline.audio.pcm import stream_mono

SAMPLE_RATE = 16_000
#: Samples per block read from ffmpeg: 30 s, whisper's own window.
BLOCK_SAMPLES = 30 * SAMPLE_RATE
#: The unit in which `windows` looks for the quietest place to cut.
_CUT_FRAME = SAMPLE_RATE // 10


def stream_16k_mono(ffmpeg: str, path: Path) -> Iterator[np.ndarray]:
    """What whisper consumes, 30 s at a time (see `pipeline.audio.pcm`)."""
    return stream_mono(ffmpeg, path, SAMPLE_RATE, block_samples=BLOCK_SAMPLES,
                       purpose="transcription")


def decode_16k_mono(ffmpeg: str, path: Path) -> np.ndarray:
    """The whole of `stream_16k_mono` as one array, for short clips (tests, benchmarks)."""
    return np.concatenate([np.zeros(0, np.float32), *stream_16k_mono(ffmpeg, path)])


def windows(blocks: Iterable[np.ndarray], length: int, search: int
            ) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a stream of samples into consecutive windows of about `length` samples.

    Each window ends at the quietest 100 ms within `search` samples of its nominal end, so a
    cut falls between words rather than through one; yields (offset in samples, samples), and
    the windows joined give back exactly the input. Input shorter than `length + search` is
    one window. At most about two windows' worth of samples is held at any time.
    """
    if not 0 < search < length:
        raise ValueError(f"need 0 < search < length, got search={search}, length={length}")
    pending: list[np.ndarray] = []
    held = offset = 0
    for block in blocks:
        pending.append(block)
        held += len(block)
        if held < length + search:
            continue
        buffer = np.concatenate(pending)
        while len(buffer) >= length + search:
            cut = _quietest(buffer, length - search, length + search)
            yield offset, buffer[:cut]
            offset += cut
            buffer = buffer[cut:]
        pending, held = [buffer], len(buffer)
    if held:
        yield offset, np.concatenate(pending)


def _quietest(samples: np.ndarray, lo: int, hi: int) -> int:
    """The middle of the lowest-energy 100 ms frame in samples[lo:hi]."""
    frames = (hi - lo) // _CUT_FRAME
    region = samples[lo:lo + frames * _CUT_FRAME].astype(np.float64).reshape(frames, _CUT_FRAME)
    return lo + int(np.argmin(np.einsum("ij,ij->i", region, region))) * _CUT_FRAME \
        + _CUT_FRAME // 2


def energy(samples: np.ndarray) -> float:
    """Sum of squares, in float64 blocks (a float64 copy of a whole window would double it)."""
    block = 1 << 20
    return sum(float(np.dot(part, part)) for part in
               (samples[i:i + block].astype(np.float64) for i in range(0, samples.size, block)))


def dbfs(total_energy: float, count: int) -> float:
    """RMS level in dBFS of `count` samples whose squares sum to `total_energy` (−inf for
    digital silence or no samples)."""
    rms = (total_energy / count) ** 0.5 if count else 0.0
    return 20 * float(np.log10(rms)) if rms > 0 else float("-inf")

