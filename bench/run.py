"""Run the benchmark suites and write bench/results/latest.json and latest.md.

Each suite is a module with `run(workdir: Path) -> list[dict]` (one row per measured thing,
with at least "suite", "case" and "tool"). Suites are listed explicitly below.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

SUITES: dict[str, str] = {
    "feeds": "bench.feeds",
    "storage": "bench.storage",
    "review": "bench.review",
    "finishing": "bench.finishing",
    "asr": "bench.asr",
    "asr-robust": "bench.asr_robust",
    "diarize": "bench.diarize",
    "captions": "bench.captions",
    "e2e": "bench.e2e",
    "memory": "bench.memory",
    "sound": "bench.sound",
    "queue": "bench.queue",
    "audiogram": "bench.audiogram",
    "highlights": "bench.highlights",
}


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "note": os.environ.get("LEARNCAST_BENCH_MACHINE", ""),
            "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_no results_\n"
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", help=f"subset of: {', '.join(SUITES)}")
    args = parser.parse_args(argv)
    chosen = args.suites or list(SUITES)
    rows: list[dict[str, Any]] = []
    info = machine()
    with tempfile.TemporaryDirectory(prefix="learncast-bench-") as tmp:
        for name in chosen:
            module = importlib.import_module(SUITES[name])
            rows += module.run(Path(tmp) / name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for row in rows:
        row.setdefault("run_at", info["when"])
    # Rows (and the machine line) of suites not run this time are kept, so `make bench
    # SUITES=...` refreshes one part; each suite keeps the machine it was measured on (a
    # suite may name its rows otherwise: asr-robust with a baseline, asr-robust-vs-before).
    latest = RESULTS / "latest.json"
    previous = json.loads(latest.read_text()) if latest.exists() else {}
    replaced = {r["suite"] for r in rows} or set(chosen)
    kept = [r for r in previous.get("results", []) if r.get("suite") not in replaced]
    machines = {**previous.get("machines", {}), **{name: info for name in replaced}}
    rows = kept + rows
    latest.write_text(json.dumps({"machines": machines, "results": rows}, indent=2) + "\n")
    (RESULTS / "latest.md").write_text("# Benchmark results\n\n" + "".join(
        f"## {suite}\n\nMachine: {machines.get(suite, 'unknown')}\n\n"
        + to_markdown([r for r in rows if r["suite"] == suite]) + "\n"
        for suite in dict.fromkeys(r["suite"] for r in rows)))
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
