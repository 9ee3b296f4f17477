"""Feed building: how the build + Apple validation of one feed grows with the episode count.

`learncast publish` rebuilds every feed of every show from the state database, and `watch`
does so whenever a scheduled episode becomes due, so the cost per episode matters for shows
with years of back catalogue. Each case runs in a child process (wall, CPU, peak RSS measured
by the kernel); the "0 episodes" case is the fixed cost (interpreter, imports) to compare with.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from pathlib import Path
from typing import Any

from bench.measure import run_measured

EPISODE_COUNTS = (0, 100, 1000, 5000)


def _jobs(n: int) -> list[Any]:
    from pipeline.media import AudioInfo, Probe
    from pipeline.models import Job, Status
    from pipeline.sidecar import EpisodeMetadata

    base = "https://media.example.com"
    jobs = []
    for i in range(n):
        job_id = hashlib.sha256(str(i).encode()).hexdigest()[:12]
        objects = {a: {"key": f"m/{job_id}.{a}", "url": f"{base}/m/{job_id}.{a}", "size": 1000 + i,
                       "sha256": job_id * 5, "content_type": t}
                   for a, t in (("audio", "audio/mpeg"), ("vtt", "text/vtt"),
                                ("srt", "application/x-subrip"), ("html", "text/html"))}
        jobs.append(Job(
            id=job_id, sha256=job_id * 5, show="bench", title=f"Episode {i} & more",
            slug=f"episode-{i}", source="x.mp3", original="x.mp3",
            probe=Probe("mp3", 600.0, 1, AudioInfo("mp3", 44100, 2)),
            metadata=EpisodeMetadata(title=f"Episode {i}", description="Words " * 100),
            status=Status.PUBLISHED, objects=objects,
            created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=i)))
    return jobs


def build_once(n: int) -> int:
    from pipeline.config import ShowSettings
    from pipeline.feeds.build import FeedSpec, build_feed, feed_episodes
    from pipeline.feeds.validate import validate_feed

    show = ShowSettings(id="bench", title="Bench", description="Benchmark show")
    now = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    spec = FeedSpec(show=show, kind="audio", url="https://media.example.com/feeds/b.xml",
                    guid="00000000-0000-5000-8000-000000000000",
                    artwork_url="https://media.example.com/a.png",
                    episodes=tuple(feed_episodes(_jobs(n), "audio", show, now)))
    xml = build_feed(spec)
    problems = validate_feed(xml)
    if problems:
        raise SystemExit(f"benchmark feed invalid: {problems[:3]}")
    return len(xml)


def run(workdir: Path) -> list[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parent.parent
    rows = []
    for n in EPISODE_COUNTS:
        m = run_measured([sys.executable, "-m", "bench.feeds", "--episodes", str(n)], cwd=repo)
        if m.returncode != 0:
            raise RuntimeError(f"bench.feeds --episodes {n} failed (exit {m.returncode})")
        rows.append({"suite": "feeds", "case": f"{n} episodes", "tool": "build+validate",
                     **m.to_dict()})
    fixed = rows[0]["wall_s"]
    for row, n in zip(rows, EPISODE_COUNTS, strict=True):
        row["ms_per_episode"] = round((row["wall_s"] - fixed) * 1000 / n, 3) if n else ""
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, required=True)
    build_once(parser.parse_args().episodes)
