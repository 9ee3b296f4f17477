"""Feed-test fixtures (a pytest plugin loaded by tests/conftest.py, shared by tests/feeds and
the publish stage tests): episodes in a real state database whose media, made by ffmpeg,
were put through the real local storage backend — exactly what the upload stage records."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.fsutil import sha256_file, slugify
from pipeline.media import probe
from pipeline.models import Job, Status
from pipeline.sidecar import EpisodeMetadata
from pipeline.state import StateDB
from pipeline.storage import open_storage
from pipeline.workspace import Context

CONTENT_TYPES = {"audio": "audio/mpeg", "video": "video/mp4", "vtt": "text/vtt",
                 "srt": "application/x-subrip", "txt": "text/plain", "html": "text/html",
                 "chapters": "application/json+chapters"}
SUFFIXES = {"audio": ".mp3", "video": ".mp4", "vtt": ".vtt", "srt": ".srt", "txt": ".txt",
            "html": ".html", "chapters": ".chapters.json"}


def simulate_upload(ctx: Context, job: Job, files: dict[str, Path]) -> Job:
    """What the upload stage does: put each artifact through the storage backend and record
    the stored object in `job.objects`."""
    storage = open_storage(ctx.workspace)
    objects = dict(job.objects)
    for artifact, path in files.items():
        key = f"media/{job.show}/{job.slug}{SUFFIXES[artifact]}"
        sha = sha256_file(path)
        stored = storage.put(path, key, content_type=CONTENT_TYPES[artifact],
                             cache_control="public, max-age=31536000", sha256=sha)
        objects[artifact] = {"key": key, "url": storage.url(key), "size": stored.size,
                             "sha256": sha, "content_type": CONTENT_TYPES[artifact]}
    return job.replace(objects=objects)


def write_transcripts(folder: Path, stem: str, text: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "vtt": folder / f"{stem}.vtt", "srt": folder / f"{stem}.srt",
        "html": folder / f"{stem}.html",
    }
    out["vtt"].write_text(f"WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n{text}\n")
    out["srt"].write_text(f"1\n00:00:00,000 --> 00:00:01,500\n{text}\n")
    out["html"].write_text(f"<!doctype html><html><body><p>{text}</p></body></html>\n")
    return out


AddEpisode = Callable[..., Job]


@pytest.fixture
def add_episode(ctx: Context, db: StateDB, make_media: Callable[..., Path]) -> AddEpisode:
    """add_episode(title, show=..., video=False, seconds=2.0, status=PUBLISHED,
    created_at=..., transcripts=True, **metadata) → the stored Job."""
    counter = {"n": 0}

    def add(title: str, *, show: str | None = None, video: bool = False, seconds: float = 2.0,
            status: Status = Status.PUBLISHED, created_at: dt.datetime | None = None,
            transcripts: bool = True, upload: bool = True, **metadata: Any) -> Job:
        counter["n"] += 1
        show = show or ctx.settings.shows[0].id
        sha = hashlib.sha256(f"{title}-{counter['n']}".encode()).hexdigest()
        job_id = sha[:12]
        folder = ctx.workspace.job_dir(job_id)
        freq = 300 + 40 * counter["n"]
        audio = make_media(folder / "episode.mp3", "-f", "lavfi", "-i",
                           f"sine=frequency={freq}:duration={seconds}", "-c:a", "libmp3lame",
                           "-b:a", "64k")
        files = {"audio": audio}
        if video:
            files["video"] = make_media(
                folder / "episode.mp4", "-f", "lavfi", "-i",
                f"sine=frequency={freq}:duration={seconds}", "-f", "lavfi", "-i",
                f"testsrc=s=160x120:d={seconds}:r=10", "-c:v", "libx264", "-preset",
                "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest")
        if transcripts:
            files.update(write_transcripts(folder, "episode", f"Transcript of {title}"))
        source = files.get("video", audio)
        meta = EpisodeMetadata.model_validate({"title": title, "show": show, **metadata})
        job = Job(
            id=job_id, sha256=sha, show=show, title=title,
            slug=f"{slugify(title) or 'episode'}-{job_id[:6]}", source=source.name,
            original=ctx.workspace.rel(source), probe=probe(source), metadata=meta,
            status=status, files={k: ctx.workspace.rel(v) for k, v in files.items()},
            created_at=created_at or dt.datetime(2026, 1, 5, 9, 0, counter["n"], tzinfo=dt.UTC),
        )
        db.insert(job)
        if upload:
            job = simulate_upload(ctx, job, files)
            db.save(job)
        return job

    return add


def make_artwork(path: Path, size: tuple[int, int] = (1400, 1400), mode: str = "RGB",
                 fmt: str = "PNG") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    colour: Any = {"RGB": (30, 90, 160), "RGBA": (30, 90, 160, 128), "CMYK": (10, 20, 30, 0),
                   "L": 128, "P": 3}[mode]
    Image.new(mode, size, colour).save(path, fmt)
    return path


@pytest.fixture
def artwork(workspace_dir: Path) -> Path:
    """Valid show artwork at the configured default path (autouse in tests/feeds)."""
    return make_artwork(workspace_dir / "assets" / "artwork.png")


SHOWS: dict[str, dict[str, Any]] = {
    "weekly": {"id": "weekly", "title": "Learning Weekly", "author": "L&D Team",
               "description": "Weekly briefings from the L&D team.", "owner_email":
               "ld@example.com", "persons": [{"name": "Ana Host", "role": "host"}]},
    "internal": {"id": "internal", "title": "Leadership Internal", "description":
                 "For managers only.", "internal": True, "feed_token": True,
                 "category": "Business", "subcategory": "Management"},
    "course": {"id": "course", "title": "Onboarding Course", "description":
               "Your first week, session by session.", "type": "serial", "medium": "course"},
}


@pytest.fixture
def make_ctx(workspace_dir: Path, pipeline_ffmpeg: str) -> Callable[..., Context]:
    """A Context on the test workspace with extra settings (shows, storage base URL)."""
    from pipeline.workspace import open_workspace

    def make(**overrides: Any) -> Context:
        ws = open_workspace(workspace_dir, overrides=overrides)
        ws.ensure()
        return Context(workspace=ws, ffmpeg=pipeline_ffmpeg)

    return make


@pytest.fixture
def shows_ctx(make_ctx: Callable[..., Context]) -> Context:
    return make_ctx(shows=list(SHOWS.values()))
