"""Listening figures: downloads per episode, counted from access logs the way podcast
measurement counts them (after the IAB Podcast Measurement Technical Guidelines 2.x).

What counts as one download:

1. A GET of an episode's media (its MP3 or MP4, as uploaded) answered 200 or 206. HEAD,
   304, errors, feeds, captions and artwork are not downloads.
2. Not from a bot: requests without a user agent, or with one that names a crawler, a
   monitor, a link previewer or a command-line tool (`BOTS`), are dropped.
3. Requests from one client — the same address and user agent (and, on a personal feed,
   the same learner) — for the same episode within `stats.window_hours` (24) of the first
   one are one listen: their byte ranges are merged (a player fetching a file in 20 pieces,
   or resuming, is one download, and a range fetched twice counts once).
4. It counts when the merged bytes reach a minute of the episode (`stats.min_seconds`, by
   its size and duration), or all of it when it is shorter: apps that probe the first bytes
   (`Range: bytes=0-1`) or stop at once count nothing.

S3's access logs carry no Range header, only the bytes sent: there the bytes of the window's
requests are added up instead of merged. Each download is counted on the UTC day its window
began; the counts per episode and day are kept in the state database, so they outlive the
raw logs (deleted after `stats.keep_days`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.artifacts import Artifact
from pipeline.feeds.build import duration_s
from pipeline.models import Job
from pipeline.stats.logs import Request, read_serve_logs
from pipeline.workspace import Context

log = logging.getLogger(__name__)

#: User agents that are not people listening (after the OPAWG podcast user-agent list).
BOTS = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|scrap|preview|monitor|uptime|pingdom|check_http|"
    r"headless|phantomjs|curl/|wget/|python-requests|python-urllib|aiohttp|go-http-client|"
    r"java/|okhttp/(?!.*podcast)|libwww|httpclient|facebookexternalhit|twitterbot|"
    r"slackbot|discordbot|whatsapp|telegrambot|feedfetcher|feedparser|podcastindex|"
    r"podnews|castfeedvalidator|podbase|iTMS", re.IGNORECASE)
MEDIA = (Artifact.AUDIO, Artifact.VIDEO)


def is_bot(agent: str) -> bool:
    return not agent.strip() or bool(BOTS.search(agent))


@dataclass(frozen=True)
class Medium:
    """An episode's media object: what a download of it must reach to count."""

    episode_id: str
    show: str
    key: str
    size: int
    min_bytes: int


def media_index(jobs: Iterable[Job], min_seconds: float) -> dict[str, Medium]:
    """Storage key → the episode's media object it names."""
    index = {}
    for job in jobs:
        for artifact in MEDIA:
            obj = job.objects.get(artifact)
            if obj is None:
                continue
            seconds = duration_s(job, artifact.value)  # type: ignore[arg-type]
            wanted = obj.size if seconds <= min_seconds or seconds <= 0 else \
                math.ceil(obj.size * min_seconds / seconds)
            index[obj.key] = Medium(job.id, job.show, obj.key, obj.size, max(1, wanted))
    return index


def _merged(spans: list[tuple[int, int]]) -> int:
    """Bytes covered by inclusive spans, each byte once."""
    total, end = 0, -1
    for first, last in sorted(spans):
        if last <= end:
            continue
        total += last - max(first, end + 1) + 1
        end = last
    return total


@dataclass
class Counts:
    """(episode, day, learner) → downloads; learner '' when not counted per learner."""

    downloads: dict[tuple[str, str, str], int] = field(default_factory=dict)
    dropped_bots: int = 0
    requests: int = 0

    def total(self, episode_id: str) -> int:
        return sum(n for (e, _, _), n in self.downloads.items() if e == episode_id)


def count(requests: Iterable[Request], index: dict[str, Medium], *, window_hours: float,
          learner_shows: set[str]) -> Counts:
    """Downloads counted from requests (see the module's rules)."""
    out = Counts()
    groups: dict[tuple[str, str, str, str], list[Request]] = defaultdict(list)
    for req in requests:
        medium = index.get(req.key)
        if medium is None or req.method != "GET" or req.status not in (200, 206):
            continue
        out.requests += 1
        if is_bot(req.agent):
            out.dropped_bots += 1
            continue
        learner = req.learner if req.learner and medium.show in learner_shows else ""
        groups[(req.key, req.client, req.agent, learner)].append(req)
    window = dt.timedelta(hours=window_hours)
    for (key, _, _, learner), reqs in groups.items():
        medium = index[key]
        reqs.sort(key=lambda r: r.at)
        start = 0
        while start < len(reqs):
            began = reqs[start].at
            end = start
            while end < len(reqs) and reqs[end].at < began + window:
                end += 1
            spans, unspanned = [], 0
            for r in reqs[start:end]:
                if r.sent <= 0:
                    continue
                if r.first is not None:
                    spans.append((r.first, r.first + r.sent - 1))
                else:
                    unspanned += r.sent
            if _merged(spans) + unspanned >= medium.min_bytes:
                slot = (medium.episode_id, began.date().isoformat(), learner)
                out.downloads[slot] = out.downloads.get(slot, 0) + 1
            start = end
    return out


def read_requests(ctx: Context) -> list[Request]:
    """Every request in the access logs at hand: `serve`'s, and the bucket's where set."""
    stats = ctx.settings.stats
    requests = list(read_serve_logs(ctx.workspace.abs(stats.access_log)))
    if stats.s3_logs:
        from pipeline.stats.s3logs import read_s3_logs

        requests += read_s3_logs(ctx)
    return requests


def refresh(ctx: Context) -> Counts:
    """Count the logs at hand and keep the counts of the days they cover in the state
    database (days whose logs are gone keep the counts made while they were there)."""
    jobs = ctx.db.all()
    stats = ctx.settings.stats
    requests = read_requests(ctx)
    counts = count(requests, media_index(jobs, stats.min_seconds),
                   window_hours=stats.window_hours,
                   learner_shows={s.id for s in ctx.settings.shows
                                  if s.private and s.learner_stats})
    days = sorted({r.at.date().isoformat() for r in requests})
    ctx.db.downloads_replace(days, [(e, d, lrn, n) for (e, d, lrn), n in
                                    sorted(counts.downloads.items())])
    log.info("[stats] %d request(s) for media in the logs (%d from bots, dropped): %d "
             "download(s) on %d day(s)", counts.requests, counts.dropped_bots,
             sum(counts.downloads.values()), len(days))
    return counts


@dataclass(frozen=True)
class EpisodeFigures:
    episode_id: str
    show: str
    title: str
    status: str
    total: int
    last_7_days: int
    daily: list[tuple[str, int]]
    learners: dict[str, int] | None  # learner name → downloads (per-learner shows only)

    def as_dict(self) -> dict[str, Any]:
        return {"episode": self.episode_id, "show": self.show, "title": self.title,
                "status": self.status, "downloads": self.total,
                "last_7_days": self.last_7_days,
                "daily": [{"day": d, "downloads": n} for d, n in self.daily],
                **({"learners": self.learners} if self.learners is not None else {})}


def figures(ctx: Context, show: str | None = None,
            today: dt.date | None = None) -> list[EpisodeFigures]:
    """Downloads of every published (or once published) episode, from the stored counts."""
    today = today or dt.datetime.now(dt.UTC).date()
    week = (today - dt.timedelta(days=6)).isoformat()
    per_learner = {s.id for s in ctx.settings.shows if s.private and s.learner_stats}
    names = {r["id"]: r["name"] for r in ctx.db.learners()}
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in ctx.db.downloads():
        rows[row["episode_id"]].append(row)
    out = []
    for job in ctx.db.all(show=show):
        if job.results.publication is None and job.id not in rows:
            continue
        daily: dict[str, int] = defaultdict(int)
        learners: dict[str, int] = defaultdict(int)
        for row in rows.get(job.id, []):
            daily[row["day"]] += int(row["downloads"])
            if row["learner"]:
                learners[names.get(row["learner"], row["learner"])] += int(row["downloads"])
        out.append(EpisodeFigures(
            job.id, job.show, job.title, str(job.status), sum(daily.values()),
            sum(n for d, n in daily.items() if d >= week), sorted(daily.items()),
            dict(sorted(learners.items())) if job.show in per_learner else None))
    return out
