"""Run the benchmark suites and write bench/results/latest.json and latest.md.

Each suite is a module with `run(workdir: Path) -> list[dict]` (one row per measured thing,
with at least "suite", "case" and "tool"). Suites are listed explicitly below.
"""

from __future__ import annotations

import argparse
import importlib
import json
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
    "memory": "bench.memory",
}


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}


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
    with tempfile.TemporaryDirectory(prefix="learncast-bench-") as tmp:
        for name in chosen:
            module = importlib.import_module(SUITES[name])
            rows += module.run(Path(tmp) / name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    (RESULTS / "latest.json").write_text(json.dumps({"machine": info, "results": rows},
                                                    indent=2) + "\n")
    (RESULTS / "latest.md").write_text(
        f"# Benchmark results\n\nMachine: {info}\n\n" + to_markdown(rows))
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
