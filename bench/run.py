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
    "captions": "bench.captions",
    "e2e": "bench.e2e",
    "memory": "bench.memory",
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
    # Rows of suites not run this time are kept, so `make bench SUITES=...` refreshes one part.
    latest = RESULTS / "latest.json"
    kept = [r for r in json.loads(latest.read_text()).get("results", [])
            if r.get("suite") not in chosen] if latest.exists() else []
    rows = kept + rows
    latest.write_text(json.dumps({"machine": info, "results": rows}, indent=2) + "\n")
    note = os.environ.get("LEARNCAST_BENCH_MACHINE", "")
    (RESULTS / "latest.md").write_text(
        f"# Benchmark results\n\nMachine: {info}\n\n{note + chr(10) * 2 if note else ''}"
        + "".join(f"## {suite}\n\n" + to_markdown([r for r in rows if r["suite"] == suite])
                  + "\n" for suite in dict.fromkeys(r["suite"] for r in rows)))
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
