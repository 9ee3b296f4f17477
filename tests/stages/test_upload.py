"""The upload stage and `unpublish`, on real media, against the local folder and moto S3."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline import runner
from pipeline.errors import PipelineError
from pipeline.feeds.publish import unpublish
from pipeline.fsutil import sha256_file, slugify
from pipeline.models import Job, Status
from pipeline.runner import call_stage
from pipeline.sidecar import EpisodeMetadata
from pipeline.stages import upload
from pipeline.state import StateDB
from pipeline.storage.base import http_content_type
from pipeline.storage.local import META_SUFFIX
from pipeline.workspace import Context, open_workspace
from tests.conftest import MakeMedia, learncast
from tests.storage.s3fixtures import BUCKET, FaultProxy, fail_first, raw_client

TITLE = "Café Ünïcode: Sécurité & «Onboarding» 第一"
KEY_RE = re.compile(r"^[a-z0-9-]+/[a-z0-9-]+/[a-z0-9-]+-[0-9a-f]{12}(\.[a-z0-9]+)+$")


def make_job(ctx: Context, make_media: MakeMedia, *, video: bool = True) -> Job:
    """An episode as encode/caption/chapters leave it: real MP3/MP4, captions, chapters."""
    ws = ctx.workspace
    job_id = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    job = Job(id=job_id, sha256="f" * 64, show="learning-weekly", title=TITLE,
              slug=f"{slugify(TITLE)}-{job_id[:6]}", source="recording.wav",
              original="archive/recording.wav", probe=None,
              metadata=EpisodeMetadata(title=TITLE))
    work = ws.job_dir(job_id)
    audio = make_media(work / "episode.mp3", "-f", "lavfi", "-i",
                       "sine=frequency=440:duration=2", "-c:a", "libmp3lame", "-b:a", "64k")
    job = job.with_file("audio", ws.rel(audio))
    if video:
        mp4 = make_media(work / "episode.mp4", "-f", "lavfi", "-i",
                         "testsrc=size=160x120:rate=10:duration=2", "-f", "lavfi", "-i",
                         "sine=frequency=330:duration=2", "-c:v", "mpeg4", "-c:a", "aac",
                         "-shortest")
        job = job.with_file("video", ws.rel(mp4))
    base = ws.transcripts / job.show / job.slug
    base.parent.mkdir(parents=True, exist_ok=True)
    texts = {"vtt": "WEBVTT\n\n00:00.000 --> 00:02.000\nBonjour à tous\n",
             "srt": "1\n00:00:00,000 --> 00:00:02,000\nBonjour à tous\n",
             "txt": "Bonjour à tous\n", "html": "<p>Bonjour à tous</p>\n",
             "chapters": json.dumps({"version": "1.2.0",
                                     "chapters": [{"startTime": 0, "title": "Début"}]})}
    for name, text in texts.items():
        path = base.with_name(base.name + (".chapters.json" if name == "chapters"
                                           else f".{name}"))
        path.write_text(text, encoding="utf-8")
        job = job.with_file(name, ws.rel(path))
    return job


EXPECTED_TYPES = {"audio": "audio/mpeg", "video": "video/mp4", "vtt": "text/vtt",
                  "srt": "application/x-subrip", "txt": "text/plain", "html": "text/html",
                  "chapters": "application/json+chapters"}


def test_upload_to_local_storage(ctx: Context, make_media: MakeMedia) -> None:
    job = make_job(ctx, make_media)
    done = call_stage(upload, job, ctx)
    assert set(done.objects) == set(EXPECTED_TYPES)
    keys = set()
    for artifact, obj in done.objects.items():
        local = ctx.workspace.abs(job.files[artifact])
        assert KEY_RE.match(obj.key) and obj.key.isascii(), obj.key
        assert obj.key.startswith(f"learning-weekly/{job.slug}/")
        assert obj.sha256 == sha256_file(local)
        assert obj.sha256[:12] in obj.key
        assert obj.size == local.stat().st_size
        assert obj.content_type == EXPECTED_TYPES[artifact]  # bare, for the feeds
        served = json.loads((ctx.workspace.public / (obj.key + META_SUFFIX)).read_text())
        assert served["content_type"] == http_content_type(EXPECTED_TYPES[artifact])
        assert obj.url == f"http://localhost:8080/{obj.key}"
        assert (ctx.workspace.public / obj.key).read_bytes() == local.read_bytes()
        keys.add(obj.key)
    assert len(keys) == len(EXPECTED_TYPES)  # one key per rendition
    assert done.objects["audio"].key.endswith(".mp3")
    assert done.objects["chapters"].key.endswith(".chapters.json")
    assert done.measurements["upload"]["uploaded"] == len(EXPECTED_TYPES)


def test_reupload_skips_unchanged_and_rekeys_changed(ctx: Context,
                                                     make_media: MakeMedia) -> None:
    job = call_stage(upload, make_job(ctx, make_media, video=False), ctx)
    again = call_stage(upload, job, ctx)
    assert again.objects == job.objects
    assert again.measurements["upload"]["uploaded"] == 0
    assert again.measurements["upload"]["unchanged"] == 6
    vtt = ctx.workspace.abs(job.files["vtt"])
    vtt.write_text("WEBVTT\n\n00:00.000 --> 00:02.000\nHello everyone\n")
    changed = call_stage(upload, again, ctx)
    assert changed.measurements["upload"]["uploaded"] == 1
    assert changed.objects["vtt"].key != job.objects["vtt"].key  # no stale cache hit
    assert changed.objects["audio"] == job.objects["audio"]
    assert changed.results.upload.superseded == [job.objects["vtt"].key]


def test_missing_artifact_file_fails_with_advice(ctx: Context, make_media: MakeMedia) -> None:
    job = make_job(ctx, make_media, video=False)
    ctx.workspace.abs(job.files["srt"]).unlink()
    with pytest.raises(PipelineError, match="learncast retry"):
        call_stage(upload, job, ctx)


def test_upload_to_s3(workspace_dir: Path, ffmpeg: str, make_media: MakeMedia,
                      s3_workspace_env: dict[str, str], moto_server: str) -> None:
    ws = open_workspace(workspace_dir)
    ws.ensure()
    ctx = Context(workspace=ws, ffmpeg=ffmpeg, state=StateDB(ws.state_db))
    job = call_stage(upload, make_job(ctx, make_media), ctx)
    client = raw_client(moto_server)
    for artifact, obj in job.objects.items():
        head = client.head_object(Bucket=BUCKET, Key=f"podcasts/{obj.key}")
        assert head["ContentType"] == http_content_type(EXPECTED_TYPES[artifact])
        assert head["CacheControl"] == "public, max-age=31536000, immutable"
        assert head["Metadata"]["sha256"] == obj.sha256
        assert obj.url == f"{moto_server}/{BUCKET}/podcasts/{obj.key}"
    assert "storage" in ctx.resources  # one client per process, reused by later stages
    assert call_stage(upload, job, ctx).measurements["upload"]["uploaded"] == 0


def insert(db: StateDB, job: Job) -> Job:
    db.insert(job)
    return job


def test_runner_retries_upload_after_dropped_connections(
        workspace_dir: Path, ffmpeg: str, make_media: MakeMedia,
        s3_workspace_env: dict[str, str], moto_server: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections dropped for longer than boto3's own retries: the runner tries again."""
    with FaultProxy(moto_server, fail_first(2, "drop")) as proxy:
        monkeypatch.setenv("LEARNCAST_STORAGE__ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("LEARNCAST_STORAGE__PUBLIC_BASE_URL", "https://cdn.example.org")
        ws = open_workspace(workspace_dir)
        ws.ensure()
        db = StateDB(ws.state_db)
        ctx = Context(workspace=ws, ffmpeg=ffmpeg, state=db)
        try:
            job = insert(db, make_job(ctx, make_media, video=False))
            done = runner._run_stage(ctx, job, runner.Stage.of(upload), None)
            assert done.status is not Status.FAILED, done.error
            assert db.stage_status(job.id)["upload"]["attempts"] == 3
            assert [e["kind"] for e in db.events(job.id)].count("retry") == 2
            assert db.get(job.id).objects == done.objects  # type: ignore[union-attr]
        finally:
            db.close()
        assert proxy.count(outcome="drop") == 2
    assert done.objects["audio"].url.startswith("https://cdn.example.org/podcasts/")


def test_upload_stage_is_in_the_pipeline() -> None:
    names = [s.name for s in runner.STAGES]
    assert "upload" in names and names.index("upload") > names.index("prepare")


# --- unpublish ---------------------------------------------------------------------------


def test_unpublish_rebuilds_the_feeds_then_deletes(ctx: Context, db: StateDB,
                                                   make_media: MakeMedia) -> None:
    job = call_stage(upload, insert(db, make_job(ctx, make_media, video=False)), ctx)
    job = job.replace(status=Status.PUBLISHED)
    db.save(job)
    feed = ctx.workspace.public / "feeds" / "learning-weekly" / "podcast.xml"
    files = [ctx.workspace.public / o.key for o in job.objects.values()]
    deleted = unpublish(ctx, job, delete_objects=True)
    assert feed.is_file() and job.objects["audio"].url not in feed.read_text()
    assert sorted(deleted) == sorted(o.key for o in job.objects.values())
    assert not any(f.exists() for f in files)
    after = db.get(job.id)
    assert after is not None and after.status is Status.UNPUBLISHED and after.objects == {}
    assert "upload" not in db.stage_status(job.id)
    assert db.claim_next() is None  # workers leave it alone


def test_unpublish_deletes_nothing_when_the_feeds_cannot_be_rebuilt(
        ctx: Context, db: StateDB, make_media: MakeMedia) -> None:
    job = call_stage(upload, insert(db, make_job(ctx, make_media, video=False)), ctx)
    db.save(job.replace(status=Status.PUBLISHED))
    (ctx.workspace.root / ctx.settings.show(None).artwork).unlink()  # the feed is now invalid
    with pytest.raises(PipelineError, match="learncast publish"):
        unpublish(ctx, job, delete_objects=True)
    assert all((ctx.workspace.public / o.key).exists() for o in job.objects.values())


def test_cli_unpublish(ctx: Context, db: StateDB, make_media: MakeMedia,
                       workspace_dir: Path) -> None:
    job = call_stage(upload, insert(db, make_job(ctx, make_media, video=False)), ctx)
    db.save(job.replace(status=Status.PUBLISHED))
    result = learncast(workspace_dir, "unpublish", job.id[:8])
    assert result.returncode == 0, result.stderr
    assert "unpublished" in result.stdout
    status = learncast(workspace_dir, "status", "--json")
    assert json.loads(status.stdout)[0]["status"] == "unpublished"
    missing = learncast(workspace_dir, "unpublish", "ffff")
    assert missing.returncode == 2 and "no episode" in missing.stderr


