"""Stage "publish" and `learncast publish`: feeds rebuilt from the state database and uploaded
through the storage backend after the media; the runner marks the episode published."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
from pathlib import Path

import podcastparser
import pytest
from lxml import etree

from pipeline import runner
from pipeline.errors import PipelineError
from pipeline.feeds.podcast2 import PODCAST_NS
from pipeline.feeds.publish import publish_show
from pipeline.feeds.validate import FeedValidationError
from pipeline.models import Status
from pipeline.runner import call_stage
from pipeline.stages import publish, upload
from pipeline.state import StateDB
from pipeline.storage import open_storage
from pipeline.workspace import Context
from tests.conftest import learncast
from tests.feeds.plugin import AddEpisode, make_artwork

pytestmark = pytest.mark.usefixtures("artwork")

NS = {"podcast": PODCAST_NS}


def _feed(ctx: Context, key: str = "feeds/learning-weekly/podcast.xml") -> bytes:
    stored = ctx.workspace.public / key
    assert stored.is_file(), f"{key} was not uploaded"
    return stored.read_bytes()


def test_upload_then_publish_puts_chapters_and_feeds_in_storage(
        ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    add_episode("Already out")
    job = add_episode("New one", status=Status.PROCESSING, seconds=3.0, upload=False)
    chapters = ctx.workspace.job_dir(job.id) / "chapters.json"
    chapters.write_text(json.dumps({"version": "1.2.0", "chapters": [
        {"startTime": 0, "title": "Start"}]}))
    job = job.with_file("chapters", ctx.workspace.rel(chapters))

    out = call_stage(publish, call_stage(upload, job, ctx), ctx)

    obj = out.objects["chapters"]
    assert open_storage(ctx.workspace).stat(obj.key).size == chapters.stat().st_size
    assert obj.content_type == "application/json+chapters"
    record = out.results.publication
    assert record is not None and record.published_at <= dt.datetime.now(dt.UTC)
    assert record.feeds == {"audio": "http://localhost:8080/feeds/learning-weekly/podcast.xml"}
    data = _feed(ctx)
    assert (ctx.workspace.feeds / "learning-weekly" / "podcast.xml").read_bytes() == data
    pp = podcastparser.parse("http://localhost:8080/feeds/learning-weekly/podcast.xml",
                             io.BytesIO(data))
    assert sorted(e["title"] for e in pp["episodes"]) == ["Already out", "New one"]
    root = etree.fromstring(data)
    (url,) = root.xpath("//item[title='New one']/podcast:chapters/@url", namespaces=NS)
    assert url == obj.url
    assert (ctx.workspace.public / obj.key).read_bytes() == chapters.read_bytes()


def test_stage_without_uploaded_media_fails_clearly(ctx: Context,
                                                    add_episode: AddEpisode) -> None:
    job = add_episode("Not uploaded", status=Status.PROCESSING, upload=False)
    with pytest.raises(PipelineError, match="upload stage must run first"):
        call_stage(publish, job, ctx)
    assert not (ctx.workspace.public / "feeds").exists()


def test_stage_refuses_objects_missing_from_storage(ctx: Context,
                                                    add_episode: AddEpisode) -> None:
    job = add_episode("Deleted behind our back", status=Status.PROCESSING)
    open_storage(ctx.workspace).delete(job.objects["vtt"].key)
    with pytest.raises(PipelineError, match=r"uploaded vtt of episode .* is missing in storage"):
        call_stage(publish, job, ctx)
    assert not (ctx.workspace.public / "feeds").exists()


def test_invalid_feed_is_not_uploaded(ctx: Context, add_episode: AddEpisode,
                                      workspace_dir: Path) -> None:
    make_artwork(workspace_dir / "assets" / "artwork.png", (800, 600))
    job = add_episode("Blocked by artwork", status=Status.PROCESSING)
    with pytest.raises(FeedValidationError) as info:
        call_stage(publish, job, ctx)
    assert "is 800x600 px; Apple requires a square image" in str(info.value)
    assert "Apple requires 1400–3000 px" in str(info.value)
    assert not (ctx.workspace.public / "feeds").exists()


def test_runner_publishes_an_ingested_episode(ctx: Context, db: StateDB, tone) -> None:
    tone(ctx.workspace.inbox / "welcome.wav", seconds=2.0)
    (ctx.workspace.inbox / "welcome.yaml").write_text(
        "title: Welcome aboard\nchapters:\n  - {start: 0, title: Hello}\n"
        "  - {start: 1, title: Next}\n")
    report = runner.process_inbox(ctx)
    [outcome] = report.processed
    done = db.get(outcome.job_id)

    assert done is not None and done.status is Status.PUBLISHED, done and done.error
    assert set(db.stage_status(done.id)) == {s.name for s in runner.STAGES}
    assert "chapters" in done.objects
    root = etree.fromstring(_feed(ctx))
    assert root.xpath("channel/item/title/text()") == ["Welcome aboard"]
    stored = ctx.workspace.public / done.objects["audio"].key
    assert root.xpath("string(channel/item/enclosure/@length)") == str(stored.stat().st_size)
    assert root.xpath("channel/item/podcast:chapters/@url", namespaces=NS) == [
        done.objects["chapters"].url]


def test_watch_adds_a_scheduled_episode_when_its_time_comes(
        ctx: Context, db: StateDB, add_episode: AddEpisode) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    add_episode("Out now")
    add_episode("In two seconds", publish_date=soon.isoformat())
    publish_show(ctx, "learning-weekly")
    assert etree.fromstring(_feed(ctx)).xpath("channel/item/title/text()") == ["Out now"]
    stop = threading.Event()
    watcher = threading.Thread(target=runner.watch, args=(ctx, stop))
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            titles = etree.fromstring(_feed(ctx)).xpath("channel/item/title/text()")
            if len(titles) == 2:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert titles == ["In two seconds", "Out now"]


def test_run_adds_episodes_that_became_due(ctx: Context, db: StateDB,
                                           add_episode: AddEpisode) -> None:
    now = dt.datetime.now(dt.UTC)
    add_episode("Old")
    add_episode("Due an hour ago", publish_date=(now - dt.timedelta(hours=1)).isoformat())
    publish_show(ctx, "learning-weekly", now=now - dt.timedelta(hours=2))
    assert etree.fromstring(_feed(ctx)).xpath("channel/item/title/text()") == ["Old"]
    runner.process_inbox(ctx, wait=False)
    assert etree.fromstring(_feed(ctx)).xpath("channel/item/title/text()") == [
        "Due an hour ago", "Old"]


def test_cli_publish_is_idempotent(workspace_dir: Path, ctx: Context,
                                   add_episode: AddEpisode) -> None:
    add_episode("Episode one")
    first = learncast(workspace_dir, "publish")
    assert first.returncode == 0, first.stderr
    assert "learning-weekly audio feed: uploaded, 1 episode(s) → " \
           "http://localhost:8080/feeds/learning-weekly/podcast.xml" in first.stdout
    stored = ctx.workspace.public / "feeds" / "learning-weekly" / "podcast.xml"
    mtime = stored.stat().st_mtime_ns
    second = learncast(workspace_dir, "publish")
    assert second.returncode == 0, second.stderr
    assert "learning-weekly audio feed: unchanged, 1 episode(s)" in second.stdout
    assert stored.stat().st_mtime_ns == mtime
    unknown = learncast(workspace_dir, "publish", "--show", "nope")
    assert unknown.returncode == 2
    assert "no show 'nope'; configured shows: learning-weekly" in unknown.stderr


def test_cli_publish_reports_invalid_feeds(workspace_dir: Path, ctx: Context,
                                           add_episode: AddEpisode) -> None:
    add_episode("Episode one")
    make_artwork(workspace_dir / "assets" / "artwork.png", (1400, 1400), "CMYK", "JPEG")
    proc = learncast(workspace_dir, "publish")
    assert proc.returncode == 1
    assert "learning-weekly: not published — feed of show learning-weekly was not " \
           "published; it does not meet Apple's podcast requirements" in proc.stdout
    assert "uses colour mode CMYK; Apple requires RGB" in proc.stdout
