"""Plots for the review page, rendered server-side as SVG with matplotlib.

People judge a waveform or a reading-speed curve faster than a table of numbers. Each plot is
a function `(ctx, job) -> SVG text` in the `PLOTS` registry; matplotlib's object API (no
pyplot) keeps rendering safe in the web server's threads.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipeline.artifacts import Artifact
from pipeline.audio.loudness import measure_series
from pipeline.audio.pcm import stream_mono
from pipeline.captions.qa import cue_speed
from pipeline.errors import InputError, PipelineError
from pipeline.models import Job
from pipeline.review import cues as cuelib
from pipeline.review import service
from pipeline.workspace import Context

WAVE_RATE = 4000


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(9, 3), dpi=100)
    return fig, fig.add_subplot()


def reading_speed(ctx: Context, job: Job) -> str:
    cues = service.load_cues(ctx, job)
    return _svg(reading_speed_figure(cues, cuelib.profile_for(ctx.settings).max_cps))


def reading_speed_figure(cues: list[cuelib.Cue], max_cps: float | None) -> Figure:
    """Each cue's reading speed over time, the cues over `max_cps` marked.

    The legend sits above the plot area, never on it: the warned cues are the highest points,
    just where an in-plot legend ('upper right') covered them.
    """
    fig, ax = _figure()
    mids = [(c.start + c.end) / 2 for c in cues]
    speeds = [cue_speed(c)[0] for c in cues]
    ax.hlines(speeds, [c.start for c in cues], [c.end for c in cues],
              colors="#0b4fa8", linewidth=3)
    ax.plot(mids, speeds, "o", color="#0b4fa8", markersize=3, label="cue")
    if max_cps:
        over = [(m, v) for m, v in zip(mids, speeds, strict=True) if v > max_cps]
        if over:
            ax.plot(*zip(*over, strict=True), "D", color="#a30015", markersize=6,
                    label=f"over the limit ({len(over)})")
        ax.axhline(max_cps, color="#a30015", linestyle="--",
                   label=f"limit {max_cps:g} characters/s")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.02), ncol=3, frameon=False,
              borderaxespad=0.0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("characters per second")
    ax.set_ylim(bottom=0, top=max([*speeds, max_cps or 0.0, 1.0]) * 1.1)
    return fig


def _envelope(ctx: Context, path: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Min and max of each 10 ms of `path` (read as a stream), and its duration in seconds."""
    step = WAVE_RATE // 100
    lows, highs, count = [], [], 0
    try:
        for block in stream_mono(ctx.ffmpeg, ctx.workspace.abs(path), WAVE_RATE,
                                 block_samples=step * 6000, purpose="the waveform"):
            count += len(block)
            padded = np.pad(block, (0, -len(block) % step), mode="edge").reshape(-1, step)
            lows.append(padded.min(axis=1))
            highs.append(padded.max(axis=1))
    except PipelineError as exc:
        raise InputError(str(exc)) from exc
    if not count:
        return np.zeros(1, "<f4"), np.zeros(1, "<f4"), 0.0
    return np.concatenate(lows), np.concatenate(highs), count / WAVE_RATE


def waveform(ctx: Context, job: Job) -> str:
    """The recording before trimming, with what the trim stage cut away shaded."""
    if "source_audio" not in job.files:
        raise InputError(f"episode {job.id} has no source audio yet")
    service.local_path(ctx, job, Artifact.SOURCE_AUDIO)  # with a queue: fetched here
    lows, highs, _ = _envelope(ctx, job.files["source_audio"])
    fig, ax = _figure()
    bins = max(1, len(lows) // 2000)
    usable = len(lows) // bins * bins
    lows, highs = lows[:usable].reshape(-1, bins), highs[:usable].reshape(-1, bins)
    times = np.arange(lows.shape[0]) * bins / 100
    ax.fill_between(times, lows.min(axis=1), highs.max(axis=1), color="#1b1b1b", linewidth=0)
    regions = job.timeline.cut if job.results.timeline is not None else []
    for k, (a, b) in enumerate(regions):
        ax.axvspan(a, b, color="#e8a33d", alpha=0.45,
                   label="trimmed" if k == 0 else None)
    if regions:
        ax.legend(loc="upper right")
    ax.set_xlabel("time in the original recording (s)")
    ax.set_ylabel("amplitude")
    ax.set_ylim(-1, 1)
    return _svg(fig)


def _short_term(ctx: Context, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Short-term (3 s) loudness every 100 ms, from ebur128's frame log (streamed)."""
    try:
        series = measure_series(ctx.ffmpeg, ctx.workspace.abs(path))
    except PipelineError as exc:
        raise InputError(str(exc)) from exc
    values = np.where(series.short_term > -70, series.short_term, np.nan)
    return series.t, values


def loudness(ctx: Context, job: Job) -> str:
    """Short-term loudness (EBU R128, 3 s) before and after the master was made: a leveled
    master's speech sits in one band, where the recording's wandered with each speaker."""
    before_key = next((k for k in ("trimmed_audio", "source_audio") if k in job.files), None)
    if before_key is None or "master_audio" not in job.files:
        raise InputError(f"episode {job.id} has not been normalised yet")
    fig, ax = _figure()
    figures = job.results.loudness
    after = ("after normalisation (levelled)" if figures is not None and figures.leveler
             else "after normalisation")
    for key, label, colour in ((before_key, "before", "#8a8a8a"),
                               ("master_audio", after, "#0b4fa8")):
        service.local_path(ctx, job, Artifact(key))  # with a queue: fetched here
        times, values = _short_term(ctx, job.files[key])
        ax.plot(times, values, label=label, color=colour, linewidth=1)
    if figures is not None:
        target = figures.target_i
        ax.axhline(target, color="#a30015", linestyle="--", linewidth=1,
                   label=f"target {target:g} LUFS")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("short-term loudness (LUFS)")
    ax.legend(loc="lower right")
    return _svg(fig)


def downloads(ctx: Context, job: Job) -> str:
    """Downloads per day (counted by `pipeline.stats`), from the first counted day, or the
    day of publication, to today, days without any shown as zero."""
    import datetime as dt

    daily: dict[str, int] = {}
    for row in ctx.db.downloads():
        if row["episode_id"] == job.id:
            daily[row["day"]] = daily.get(row["day"], 0) + int(row["downloads"])
    today = dt.datetime.now(dt.UTC).date()
    published = job.results.publication.published_at.date() if job.results.publication else None
    first = min([dt.date.fromisoformat(d) for d in daily] + ([published] if published else [])
                + [today])
    days = [first + dt.timedelta(days=n) for n in range((today - first).days + 1)][-90:]
    fig, ax = _figure()
    ax.bar([d.isoformat() for d in days], [daily.get(d.isoformat(), 0) for d in days],
           color="#0b4fa8")
    ax.set_xlabel("day (UTC)")
    ax.set_ylabel("downloads")
    ax.yaxis.get_major_locator().set_params(integer=True)
    step = max(1, len(days) // 10)
    ax.set_xticks(range(0, len(days), step), [days[i].isoformat() for i in
                                              range(0, len(days), step)], rotation=30,
                  ha="right")
    return _svg(fig)


PLOTS: dict[str, Callable[[Context, Job], str]] = {
    "reading-speed": reading_speed,
    "waveform": waveform,
    "loudness": loudness,
    "downloads": downloads,
}
