"""Wall time, CPU time and peak RSS of one child process, measured by the kernel (wait4)."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Measured:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_measured(cmd: list[str], **popen: Any) -> Measured:
    """Run `cmd` to completion; figures cover that child (and its waited-for children)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(wall_s=round(wall, 3), cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
                    peak_rss_mb=round(usage.ru_maxrss / 1024, 1), returncode=proc.returncode)
