"""Distributed mode against the embedded runner, on one machine: what the queue costs.

Ten one-minute podcast clips (MP3, real speech from the shared recordings, each starting at
another point of it so each is its own episode) are taken through `learncast run`:

- `embedded`: the default runner, SQLite, one episode at a time (`runner.workers = 1`);
- `queue, 1 worker`: Redis broker, PostgreSQL state, one `learncast worker` process (solo
  pool), every stage's outputs stored as working copies — the distributed path doing the same
  work serially;
- `queue, 2 workers`: the same with two worker processes (throughput on this machine).

Each against two object stores: a plain folder that every workspace names as its public
folder (so the figures show what the queue and the state database add), and moto's S3
server running in this process (what an S3 round trip per working copy adds; moto is a
Python server sharing this machine's CPUs, so it overstates a real object store's cost).

Redis and PostgreSQL are Debian's servers, started here like the tests start them
(`tests.servers`). Workers are started and idle before `run` starts (they are long-running
services); the wall time is `run`'s, from an inbox holding all ten clips to the last episode
published. Besides wall time (which other work on a shared machine inflates), CPU seconds are
counted: the embedded `run` with its ffmpeg children (wait4), and for the queue the `run`
process, the workers and their children (/proc) and Redis and PostgreSQL (the postmaster and
the backends it reaped) — the overhead figure that machine load does not distort. The ASR
engine is faster-whisper tiny.en, as in the other pipeline benchmarks.
Per-stage wall and CPU seconds per minute of audio (the runner's own figures) come from the
first embedded run, where one episode runs at a time so the CPU figures are exact; the
README's capacity estimate is worked from them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.e2e import REPO, _env, _ff, _moto, _speech_base
from bench.measure import run_measured

CLIPS, SECONDS = 10, 60.0


def _clips(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    base = _speech_base(folder)
    out = []
    for n in range(CLIPS):
        dest = folder / f"clip-{n:02d}.mp3"
        if not dest.exists():
            _ff("-stream_loop", "-1", "-ss", f"{n * 9.5:.1f}", "-i", str(base), "-t",
                f"{SECONDS}", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k", str(dest))
        out.append(dest)
    return out


def _workspace(root: Path, clips: list[Path] | None) -> Path:
    from pipeline.workspace import init_workspace

    if root.exists():
        shutil.rmtree(root)
    init_workspace(root)
    for clip in clips or []:
        shutil.copy2(clip, root / "inbox" / clip.name)
    return root


def _episodes(url: str) -> list[dict[str, Any]]:
    from pipeline.state import StateDB

    db = StateDB(url)
    try:
        return [{"id": j.id, "status": str(j.status),
                 "wall": j.measurements.get("stage_seconds", {}),
                 "cpu": j.measurements.get("stage_cpu_seconds", {})} for j in db.all()]
    finally:
        db.close()


def _run(case: str, ws: Path, env: dict[str, str], state_url: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pipeline", "--workspace", str(ws), "run"]
    m = run_measured(cmd, cwd=REPO, env=env, timeout_s=3600)
    episodes = _episodes(state_url)
    published = sum(1 for e in episodes if e["status"] == "published")
    if m.returncode != 0 or published != CLIPS:
        raise SystemExit(f"{case}: run exited {m.returncode}, {published}/{CLIPS} published; "
                         f"see {ws}")
    stage_sum = sum(sum(e["wall"].values()) for e in episodes)
    return {"suite": "queue", "case": f"{CLIPS} x 1-min clips", "tool": case,
            "wall_s": m.wall_s, "run_cpu_s": m.cpu_s,
            "episodes_per_min": round(CLIPS / m.wall_s * 60, 2),
            "stage_wall_sum_s": round(stage_sum, 1), "_episodes": episodes}


def _cpu(pid: int) -> float:
    """CPU seconds of a live process and of the children it has waited for (ffmpeg)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _servers_cpu(redis: Any, pg: Any) -> float:
    """Redis's CPU, plus PostgreSQL's (the postmaster and the backends it has reaped)."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    return _cpu(redis.proc.pid) + _cpu(postmaster)


def _worker(ws: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--workspace", str(ws), "worker"],
                            cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while b"ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start; see {log}")
        time.sleep(0.2)
    return proc


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _per_stage(episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean wall and CPU seconds per minute of audio, per stage (embedded run)."""
    rows = []
    stages = list(episodes[0]["wall"])
    for stage in stages:
        wall = sum(e["wall"].get(stage, 0.0) for e in episodes) / len(episodes)
        cpu = sum(e["cpu"].get(stage, 0.0) for e in episodes) / len(episodes)
        rows.append({"suite": "queue", "case": "per stage, 1 min of audio", "tool": stage,
                     "wall_s": round(wall / (SECONDS / 60), 3),
                     "cpu_s": round(cpu / (SECONDS / 60), 3)})
    return rows


def _stage_sums(episodes: list[dict[str, Any]]) -> str:
    totals: dict[str, float] = {}
    for e in episodes:
        for stage, seconds in e["wall"].items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    return ", ".join(f"{k} {v:.1f}" for k, v in totals.items() if v >= 0.05)


def run(workdir: Path) -> list[dict[str, Any]]:
    from tests.servers import Postgres, Redis

    workdir.mkdir(parents=True, exist_ok=True)
    clips = _clips(workdir / "inputs")
    server, _, s3env = _moto()
    redis, pg = Redis(), Postgres()
    rows: list[dict[str, Any]] = []
    try:
        base = _env({"PYTHONPATH": str(REPO)})
        # Two object stores: a folder that every workspace names as its public folder (one
        # machine; what the queue adds, without an S3 server's cost), and moto's S3 server.
        stores = {"local folder": {"LEARNCAST_PATHS__PUBLIC": str(workdir / "object-store")},
                  "s3 (moto)": s3env}
        plans = [("local folder", 0), ("local folder", 1), ("local folder", 2),
                 ("s3 (moto)", 0), ("s3 (moto)", 1)]
        baseline: dict[str, float] = {}
        for n, (store, n_workers) in enumerate(plans):
            env = {**base, **stores[store], "LEARNCAST_STORAGE__PREFIX": f"run{n}"}
            if store == "local folder":
                env["LEARNCAST_PATHS__PUBLIC"] = str(workdir / f"object-store-{n}")
            ws = _workspace(workdir / f"run{n}-coord", clips)
            if n_workers == 0:
                row = _run("embedded", ws, env, str(ws / "state" / "learncast.db"))
                baseline[store] = row["wall_s"]
            else:
                url = pg.create_database()
                env.update({"LEARNCAST_QUEUE__URL": redis.url.rsplit("/", 1)[0] + f"/{n}",
                            "LEARNCAST_STATE__URL": url})
                workers = [_worker(_workspace(workdir / f"run{n}-w{k}", None), env,
                                   workdir / f"run{n}-w{k}.log") for k in range(n_workers)]
                idle = [_cpu(w.pid) for w in workers]
                servers = _servers_cpu(redis, pg)
                try:
                    row = _run(f"queue, {n_workers} worker{'s' * (n_workers > 1)}", ws, env,
                               url)
                    row["workers_cpu_s"] = round(sum(_cpu(w.pid) for w in workers)
                                                 - sum(idle), 1)
                finally:
                    _stop(workers)
                time.sleep(1)  # the backends of the stopped workers are reaped
                row["servers_cpu_s"] = round(_servers_cpu(redis, pg) - servers, 1)
            row["storage"] = store
            row["total_cpu_s"] = round(row["run_cpu_s"] + row.get("workers_cpu_s", 0.0)
                                       + row.get("servers_cpu_s", 0.0), 1)
            if n_workers == 0:
                baseline[f"{store} cpu"] = row["total_cpu_s"]
            row["x_embedded"] = round(row["wall_s"] / baseline[store], 3)
            row["cpu_x_embedded"] = round(row["total_cpu_s"] / baseline[f"{store} cpu"], 3)
            row["stage_sums_s"] = _stage_sums(row["_episodes"])
            rows.append(row)
        per_stage = _per_stage(rows[0]["_episodes"])
        for row in rows:
            row.pop("_episodes")
        return rows + per_stage
    finally:
        redis.close()
        pg.close()
        server.stop()
