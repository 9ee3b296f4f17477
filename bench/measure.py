"""Wall time, CPU time and peak RSS of one child process, measured by the kernel (wait4)."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
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


def run_measured_lean(cmd: list[str], **popen: Any) -> Measured:
    """`run_measured` from a fresh small Python process instead of this one.

    Linux keeps a process's peak RSS across exec, and a forked (or vforked) child starts
    from its parent's; a benchmark parent that has loaded torch or moto would lend every
    child hundreds of MB it never used. A lean launcher makes the figure the child's own.
    """
    import json
    import sys

    if "cwd" in popen:
        raise ValueError("run_measured_lean runs the command in the repository root")
    out = subprocess.run([sys.executable, "-m", "bench.measure", json.dumps(cmd)],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent,
                         **{k: v for k, v in popen.items() if k == "env"})
    return Measured(**json.loads(out.stdout))


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run_measured(json.loads(sys.argv[1])).to_dict()))
