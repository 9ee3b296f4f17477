"""Wall time, CPU time and peak RSS of one child process, measured by the kernel (wait4).

Linux keeps a process's peak RSS across exec, and a forked child starts from its parent's
resident size: a parent holding 1 GB (pytest after loading torch, a benchmark running moto)
lends every child that gigabyte in `ru_maxrss`, however little the child itself uses. So the
command is always started by a fresh, small launcher process (`python -m bench.measure`),
and the figures are the command's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measured:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_measured(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
                 timeout_s: float | None = None) -> Measured:
    """Run `cmd` to completion through the lean launcher; figures cover the command and the
    children it waited for. After `timeout_s` the command is killed (a hang guard: the
    returncode then says so)."""
    spec = {"cmd": cmd, "cwd": str(cwd) if cwd else None, "timeout_s": timeout_s}
    out = subprocess.run([sys.executable, "-m", "bench.measure", json.dumps(spec)],
                         capture_output=True, text=True, check=True, cwd=REPO, env=env)
    return Measured(**json.loads(out.stdout))


def _wait4(cmd: list[str], cwd: str | None, timeout_s: float | None) -> Measured:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=cwd)
    timer = threading.Timer(timeout_s, proc.kill) if timeout_s else None
    if timer:
        timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if timer:
            timer.cancel()
    wall = time.perf_counter() - start
    return Measured(wall_s=round(wall, 3), cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
                    peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
                    returncode=os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(json.dumps(_wait4(spec["cmd"], spec["cwd"], spec["timeout_s"]).to_dict()))
