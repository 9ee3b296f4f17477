"""Fixed fixture shows for golden-file and validator tests: literal episodes and stored
objects, so the built feeds are byte-for-byte reproducible."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from pipeline.artifacts import Artifact, Timeline
from pipeline.config import ShowSettings
from pipeline.feeds.build import FeedKind, FeedSpec, feed_episodes
from pipeline.feeds.guid import podcast_guid
from pipeline.media import AudioInfo, Probe, VideoInfo
from pipeline.models import Job, Results, Status, StoredArtifact
from pipeline.sidecar import EpisodeMetadata

BASE = "https://media.example.com/learncast"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _obj(key: str, size: int, content_type: str) -> StoredArtifact:
    return StoredArtifact(key=key, url=f"{BASE}/{key}", size=size, content_type=content_type,
                          sha256=hashlib.sha256(key.encode()).hexdigest())


def fixture_job(show: str, n: int, title: str, *, video: bool = False, chapters_file: bool = False,
                duration: float = 600.0, **metadata: Any) -> Job:
    job_id = hashlib.sha256(f"{show}-{n}".encode()).hexdigest()[:12]
    slug = f"episode-{n}-{job_id[:6]}"
    objects = {Artifact.AUDIO: _obj(f"media/{show}/{slug}.mp3", 4_800_000 + n, "audio/mpeg")}
    if video:
        objects[Artifact.VIDEO] = _obj(f"media/{show}/{slug}.mp4", 48_000_000 + n, "video/mp4")
    for artifact, mime in ((Artifact.VTT, "text/vtt"), (Artifact.SRT, "application/x-subrip"),
                           (Artifact.HTML, "text/html"), (Artifact.TXT, "text/plain")):
        objects[artifact] = _obj(f"transcripts/{show}/{slug}.{artifact.value}", 1000 + n, mime)
    if chapters_file:
        objects[Artifact.CHAPTERS] = _obj(f"episodes/{show}/{slug}/chapters.json", 300,
                                          "application/json+chapters")
    probe = Probe(container="mov,mp4,m4a,3gp,3g2,mj2" if video else "mp3", duration_s=duration,
                  size_bytes=1, audio=AudioInfo("aac" if video else "mp3", 48000, 2),
                  video=VideoInfo("h264", 1920, 1080, 30.0) if video else None)
    return Job(id=job_id, sha256=job_id * 5, show=show, title=title, slug=slug,
               source=f"{slug}.mp4", original=f"archive/{job_id}/{slug}.mp4", probe=probe,
               metadata=EpisodeMetadata.model_validate({"title": title, **metadata}),
               status=Status.PUBLISHED, objects=objects,
               results=Results(timeline=Timeline.untrimmed(duration).with_durations(
                   audio=duration + 5.4)),
               created_at=dt.datetime(2026, 3, n, 8, 30, tzinfo=dt.UTC))


SHOWS: dict[str, ShowSettings] = {
    "audio-only": ShowSettings(
        id="audio-only", title="Sales Skills & Tactics", author="Sales Enablement",
        description="Short lessons for account managers: negotiation, discovery, closing.",
        owner_email="enablement@example.com", copyright="© 2026 Example Corp",
        link="https://intranet.example.com/sales-skills", category="Business",
        subcategory="Careers",
        persons=[{"name": "Dana Lee", "role": "host", "href": "https://example.com/dana"}]),
    "video": ShowSettings(
        id="video", title="Tooling Tuesdays", description="Screen-recorded walkthroughs.",
        author="IT Academy", category="Technology", subcategory="", medium="podcast",
        internal=True, owner_email="it-academy@example.com"),
    "course": ShowSettings(
        id="course", title="Onboarding: Your First Week", type="serial", medium="course",
        description="Five sessions that take you through your first week.", author="People Team",
        category="Education", subcategory="Courses", language="en-GB"),
}


def fixture_jobs(show: str) -> list[Job]:
    if show == "audio-only":
        return [
            fixture_job(show, 1, "Discovery calls that work", chapters_file=True,
                        description="Ask better questions & listen. <b>Really</b> listen.",
                        publish_date="2026-03-02T09:00:00Z"),
            fixture_job(show, 2, "Negotiation: anchors 🎯", explicit=True, season=1, episode=2,
                        publish_date="2026-03-09T09:00:00Z"),
            fixture_job(show, 3, "Scheduled for later", publish_date="2026-12-01T09:00:00Z"),
        ]
    if show == "video":
        return [fixture_job(show, 1, "Git in ten minutes", video=True,
                            chapters_file=True),
                fixture_job(show, 2, "Audio-only Q&A", episode_type="bonus")]
    return [fixture_job(show, n, f"Session {n}: {topic}", episode=n, season=1)
            for n, topic in ((2, "Tools"), (1, "Welcome"), (3, "Your team"))]


def fixture_spec(show: str, kind: FeedKind = "audio") -> FeedSpec:
    settings = SHOWS[show]
    url = f"{BASE}/feeds/{show}/{'podcast' if kind == 'audio' else 'video'}.xml"
    return FeedSpec(show=settings, kind=kind, url=url, guid=podcast_guid(url),
                    artwork_url=f"{BASE}/shows/{show}/artwork-0123456789abcdef.png",
                    episodes=tuple(feed_episodes(fixture_jobs(show), kind, settings, NOW)))
