"""Reading an MP4 back for the audiogram tests: frames at given times, stream facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np


def frames_at(path: Path, times: list[float]) -> dict[float, np.ndarray]:
    """RGB frames shown at each time (the last frame starting at or before it)."""
    wanted = sorted(times)
    out: dict[float, np.ndarray] = {}
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        previous = None
        for frame in c.decode(stream):
            t = float(frame.pts * stream.time_base)
            while wanted and t > wanted[0] + 1e-6:
                if previous is not None:
                    out[wanted[0]] = previous
                wanted.pop(0)
            if not wanted:
                break
            previous = frame.to_ndarray(format="rgb24")
        for t in wanted:
            if previous is not None:
                out[t] = previous
    return out


def streams(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        return {"video_codec": v.codec_context.name, "pix_fmt": v.codec_context.format.name,
                "width": v.width, "height": v.height, "fps": float(v.average_rate or 0),
                "frames": v.frames, "audio_codec": a.codec_context.name,
                "rate": a.sample_rate, "channels": a.channels,
                "duration": (c.duration or 0) / av.time_base,
                "chapters": [(round(float(ch["start"] * ch["time_base"]), 3),
                              ch["metadata"].get("title", "")) for ch in c.chapters()],
                "attached_pic": any(s.disposition & 1024 for s in c.streams.video)}


def text_pixels(region: np.ndarray) -> int:
    """Near-white pixels: caption and title text is drawn white on a dark panel."""
    return int(np.sum(np.all(region >= 215, axis=-1)))
