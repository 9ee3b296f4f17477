"""The one test seam: named points where a crash test can freeze the process.

Crash tests (tests/test_crash.py) kill `learncast` at the worst moments: inside each stage,
and with a finished temporary file waiting for its atomic rename. Production code marks those
moments with `reached(point)`; nothing happens unless `LEARNCAST_TEST_PAUSE_AT` names a
matching point (a glob: `stage:trim`, `replace:*.mp3`). Then the process writes its pid (or
the temporary file's path) to `LEARNCAST_TEST_PAUSE_MARKER` and sleeps until it is killed.
Never set these variables in production.
"""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path

PAUSE_AT_ENV = "LEARNCAST_TEST_PAUSE_AT"
MARKER_ENV = "LEARNCAST_TEST_PAUSE_MARKER"


def reached(point: str, detail: str = "") -> None:
    """Freeze here if a crash test asked for `point`; `detail` goes to the marker file."""
    pattern = os.environ.get(PAUSE_AT_ENV)
    if not pattern or not fnmatch.fnmatch(point, pattern):
        return
    marker = os.environ.get(MARKER_ENV)
    if marker:  # renamed into place: a test polling for the file never reads it half-written
        part = Path(f"{marker}.part")
        part.write_text(detail or str(os.getpid()))
        os.replace(part, marker)
    while True:
        time.sleep(0.5)
