"""Build one show's RSS feed (audio or video) from episodes in the state database.

Pure: everything comes in as arguments (show settings, the feed's URL and guid, the artwork URL,
the episodes) and the feed XML comes out as bytes, so the same inputs always give the same bytes.
That is what lets `learncast publish` skip uploading a feed that has not changed, and lets the
golden-file tests compare feeds byte for byte. Nothing here reads the disk or the clock:
`lastBuildDate` is the newest episode's date, not "now".

Every URL, byte length and content type comes from `job.objects` (what the storage backend
confirmed it holds), never from local files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from feedgen.feed import FeedGenerator

from pipeline.artifacts import Artifact
from pipeline.config import ShowSettings
from pipeline.feeds import apple, podcast2
from pipeline.feeds.podcast2 import AlternateEnclosure, Person, Soundbite, Transcript
from pipeline.models import Job, StoredArtifact

FeedKind = Literal["audio", "video"]

#: Feed file names per kind (local `feeds/<show>/` and the storage keys).
FEED_FILES: dict[str, str] = {"audio": "podcast.xml", "video": "video.xml"}

#: Transcript artifacts published per episode, with their `podcast:transcript` type and rel.
TRANSCRIPTS: tuple[tuple[Artifact, str, str], ...] = (
    (Artifact.SRT, "application/x-subrip", ""),
    (Artifact.HTML, "text/html", ""),
    (Artifact.VTT, "text/vtt", "captions"),
)

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class FeedSpec:
    """Everything one feed is made of."""

    show: ShowSettings
    kind: FeedKind
    url: str
    guid: str
    artwork_url: str
    episodes: tuple[Job, ...]
    generator: str = "Learncast"


def episode_date(job: Job) -> dt.datetime:
    """When an episode is (or was) published: the sidecar's date, else when it was first
    published, else when it was ingested. Stable across rebuilds, so items never jump."""
    if job.metadata.publish_date is not None:
        return job.metadata.publish_date.astimezone(dt.UTC)
    if job.results.publication is not None:
        return job.results.publication.published_at.astimezone(dt.UTC)
    created = job.created_at
    return (created if created.tzinfo else created.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def rendition(job: Job, kind: FeedKind | str) -> Artifact | None:
    """The artifact an episode's `kind` feed encloses: the MP3 for audio; for video the MP4,
    else the audiogram of an audio-only episode. None when it has neither stored."""
    for artifact in ((Artifact.AUDIO,) if kind == "audio"
                     else (Artifact.VIDEO, Artifact.AUDIOGRAM)):
        if artifact in job.objects:
            return artifact
    return None


def enclosure(job: Job, kind: FeedKind | str) -> StoredArtifact | None:
    artifact = rendition(job, kind)
    return job.objects[artifact] if artifact is not None else None


def feed_episodes(jobs: Iterable[Job], kind: FeedKind, show: ShowSettings,
                  now: dt.datetime) -> list[Job]:
    """The episodes a feed lists now: stored media of this kind, publish date reached, in the
    order apps expect (newest first; oldest first — by season and episode — for serial shows)."""
    chosen = [j for j in jobs if rendition(j, kind) is not None and episode_date(j) <= now]
    if show.type == "serial":
        return sorted(chosen, key=lambda j: (j.metadata.season or 0,
                                             j.metadata.episode or 0, episode_date(j), j.id))
    return sorted(chosen, key=lambda j: (episode_date(j), j.id), reverse=True)


def medium_for(show: ShowSettings, kind: FeedKind) -> str:
    if show.medium == "course":
        return "course"
    return "video" if kind == "video" else show.medium


def locked_for(show: ShowSettings) -> bool:
    return show.locked == "yes" or (show.locked == "auto" and show.internal)


def duration_s(job: Job, kind: FeedKind) -> int:
    """The rendition's own length (with bumpers), as encode measured it."""
    measured = job.timeline.duration(rendition(job, kind) or Artifact(kind))
    if measured:
        return round(measured)
    return round(job.probe.duration_s) if job.probe else 0


def episode_guid(job: Job) -> str:
    """Stable for good: derived from the content hash's id, never from a URL or title."""
    return f"learncast:{job.id}"


def build_feed(spec: FeedSpec) -> bytes:
    """The feed XML for `spec` (UTF-8, pretty-printed, deterministic)."""
    show = spec.show
    fg = FeedGenerator()
    fg.load_extension("podcast")
    fg.register_extension(apple.EXTENSION_NAME, apple.AppleExtension,
                          apple.AppleEntryExtension)
    fg.register_extension(podcast2.EXTENSION_NAME, podcast2.Podcast2Extension,
                          podcast2.Podcast2EntryExtension)
    ext: Any = fg  # the extensions are attributes feedgen adds at run time

    title = show.title if spec.kind == "audio" else f"{show.title} (video)"
    fg.title(title)
    fg.description(show.description or show.title)
    fg.language(show.language)
    fg.link(href=spec.url, rel="self")
    fg.link(href=show.link or spec.url, rel="alternate")  # feedgen's <link> is the last one
    fg.image(url=spec.artwork_url, title=title, link=show.link or spec.url)
    if show.copyright:
        fg.copyright(show.copyright)
    fg.generator(spec.generator)
    dates = [episode_date(j) for j in spec.episodes]
    fg.lastBuildDate(max(dates) if dates else EPOCH)

    ext.podcast.itunes_image(spec.artwork_url)
    ext.podcast.itunes_type(show.type)
    if show.author:
        ext.podcast.itunes_author(show.author)
    if show.owner_email:
        ext.podcast.itunes_owner(name=show.author or show.title, email=show.owner_email)
    if show.internal:
        ext.apple.block(True)
    ext.apple.category(show.category, show.subcategory)
    ext.apple.explicit(show.explicit)
    ext.podcast2.guid(spec.guid)
    ext.podcast2.locked(locked_for(show), owner=show.owner_email)
    ext.podcast2.medium(medium_for(show, spec.kind))
    for p in show.persons:
        ext.podcast2.person(Person(name=p.name, role=p.role, group=p.group, href=p.href,
                                   img=p.img))

    for job in spec.episodes:
        _add_item(fg, spec, job)
    return bytes(fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True))


def _add_item(fg: FeedGenerator, spec: FeedSpec, job: Job) -> None:
    show, kind, meta = spec.show, spec.kind, job.metadata
    media = enclosure(job, kind)
    assert media is not None  # feed_episodes lists only episodes with this rendition
    fe: Any = fg.add_entry(order="append")
    fe.title(job.title)
    fe.description(meta.description or job.title)
    fe.guid(episode_guid(job), permalink=False)
    fe.pubDate(episode_date(job))
    fe.enclosure(media.url, media.size, media.content_type)
    html = job.objects.get(Artifact.HTML)
    if html:
        fe.link(href=html.url, rel="alternate")
    fe.podcast.itunes_duration(duration_s(job, kind))
    fe.podcast.itunes_episode_type(meta.episode_type)
    if meta.season is not None:
        fe.podcast.itunes_season(meta.season)
    if meta.episode is not None:
        fe.podcast.itunes_episode(meta.episode)
    fe.apple.explicit(meta.explicit or show.explicit)
    for artifact, mime, rel in TRANSCRIPTS:
        obj = job.objects.get(artifact)
        if obj:
            fe.podcast2.transcript(Transcript(url=obj.url, type=mime,
                                              language=show.language, rel=rel))
    chapters = job.objects.get(Artifact.CHAPTERS)
    if chapters:
        fe.podcast2.chapters(chapters.url)
    for bite in job.results.soundbites or []:
        fe.podcast2.soundbite(Soundbite(bite.start, bite.duration, bite.title))
    audio, video = rendition(job, "audio"), rendition(job, "video")
    if audio is not None and video is not None:
        for artifact in (audio, video) if kind == "audio" else (video, audio):
            obj = job.objects[artifact]
            fe.podcast2.alternate_enclosure(AlternateEnclosure(
                url=obj.url, type=obj.content_type, length=obj.size,
                default=artifact is rendition(job, kind), title=_TITLES[artifact],
                height=_height(job, artifact), sha256=obj.sha256))


_TITLES = {Artifact.AUDIO: "Audio", Artifact.VIDEO: "Video",
           Artifact.AUDIOGRAM: "Video (audiogram with captions)"}


def _height(job: Job, artifact: Artifact) -> int | None:
    if artifact is Artifact.VIDEO and job.probe and job.probe.video:
        return job.probe.video.height
    if artifact is Artifact.AUDIOGRAM and job.results.audiogram:
        return job.results.audiogram.height
    return None
