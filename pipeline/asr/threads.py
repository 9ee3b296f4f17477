"""How many CPU threads each worker's ASR engine may use.

PyTorch and CTranslate2 each default to every core. With `runner.workers` episodes in flight,
each worker's engine then starts a thread per core and the machine thrashes: four workers on
four cores run sixteen busy threads. The rule: `transcribe.threads` when set, otherwise
`cores // workers` (at least one), so threads x workers <= cores. The choice is logged once
per process (one run or watch), with the figures it was made from.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

_logged: set[tuple[int, int, int, int]] = set()
_lock = threading.Lock()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadPlan:
    threads: int
    workers: int
    cores: int
    configured: int

    @property
    def oversubscribed(self) -> bool:
        return self.threads * self.workers > self.cores

    def describe(self) -> str:
        how = (f"transcribe.threads = {self.configured}" if self.configured
               else "cores // workers")
        return (f"ASR threads: {self.threads} per worker x {self.workers} worker(s) on "
                f"{self.cores} core(s) ({how})")


def plan_threads(configured: int, workers: int, cores: int | None = None) -> ThreadPlan:
    """The threads each worker's engine gets (see the module docstring)."""
    cores = cores or available_cores()
    workers = max(1, workers)
    threads = configured or max(1, cores // workers)
    return ThreadPlan(threads=threads, workers=workers, cores=cores, configured=configured)


def log_plan_once(plan: ThreadPlan) -> None:
    """Log the plan the first time this process uses it (each worker asks; one line)."""
    key = (plan.threads, plan.workers, plan.cores, plan.configured)
    with _lock:
        if key in _logged:
            return
        _logged.add(key)
    if plan.oversubscribed:
        log.warning("[transcribe] %s: %d threads for %d cores; lower transcribe.threads or "
                    "runner.workers (0 = automatic) so the workers do not thrash",
                    plan.describe(), plan.threads * plan.workers, plan.cores)
    else:
        log.info("[transcribe] %s", plan.describe())
