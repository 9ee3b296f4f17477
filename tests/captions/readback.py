"""Read caption files back the way players do: ffmpeg's demuxers count the cues they see.

A cue whose text smuggles in a timing line or a blank line is read by ffmpeg as two cues (or
swallows its neighbour); counting ffmpeg's packets catches both, whatever the text says.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

#: C0/C1 control characters other than the line feed a caption file is made of.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
#: Hostile cue texts a reviewer can type (or a recogniser can emit), each one cue's worth.
HOSTILE_TEXTS = [
    "00:01.000 --> 00:02.000",
    "00:00:01.000 --> 00:00:02.000",
    "00:00:01,000 --> 00:00:02,000",
    "1\n00:00:05,000 --> 00:00:06,000\nsneaky",
    "a ---> b ----> c",
    "1:2:3,4-->5:6:7,8",
    "NUL\x00 ESC\x1b[31m red BEL\x07 DEL\x7f C1\x9b",
    "para\u2028\u2028graph\u2029split",
    "blank\n\n\nlines\r\n\r\nhere",
    "tab\there\x0bvt\x0cff\x85nel\x1c\x1d\x1e\x1fseparators",
    "WEBVTT\n\nNOTE fake\n\n2\n00:00:09.000 --> 00:00:10.000",
]


def ffmpeg_cues(ffmpeg: str, path: Path) -> list[tuple[float, float]]:
    """(start, end) of every cue ffmpeg's demuxer reads from an SRT or WebVTT file."""
    proc = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path),
                           "-map", "0", "-c", "copy", "-f", "framecrc", "-"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"ffmpeg cannot read {path.name}: {proc.stderr[-800:]}"
    tb = re.search(r"^#tb 0: (\d+)/(\d+)$", proc.stdout, re.MULTILINE)
    assert tb, proc.stdout
    unit = int(tb.group(1)) / int(tb.group(2))
    cues = []
    for line in proc.stdout.splitlines():
        if line and not line.startswith("#"):
            _, _, pts, duration, *_ = (f.strip() for f in line.split(","))
            cues.append((round(int(pts) * unit, 3), round((int(pts) + int(duration)) * unit, 3)))
    return cues
