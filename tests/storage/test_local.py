"""The local backend and the backend-independent publish helpers, on a real folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.feeds.publish import PublishItem, publish_files
from pipeline.fsutil import sha256_file
from pipeline.storage import open_storage
from pipeline.storage.base import check_key, content_type_for
from pipeline.storage.local import META_SUFFIX, LocalStorage
from pipeline.workspace import Context

CC = "public, max-age=31536000, immutable"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "public", "https://media.example.org/pod")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_put_stat_url_delete(storage: LocalStorage, tmp_path: Path) -> None:
    local = write(tmp_path / "a.mp3", b"abc" * 100)
    sha = sha256_file(local)
    stored = storage.put(local, "show/ep/a.mp3", content_type="audio/mpeg", cache_control=CC,
                         sha256=sha)
    assert (storage.root / "show" / "ep" / "a.mp3").read_bytes() == local.read_bytes()
    assert stored == storage.stat("show/ep/a.mp3")
    assert stored.sha256 == sha and stored.size == 300 and stored.cache_control == CC
    assert storage.url("show/ep/a.mp3") == "https://media.example.org/pod/show/ep/a.mp3"
    storage.delete("show/ep/a.mp3")
    assert storage.stat("show/ep/a.mp3") is None
    assert not (storage.root / "show").exists()  # emptied folders go too
    storage.delete("show/ep/a.mp3")  # twice is fine


@pytest.mark.parametrize("key", ["", "/abs.mp3", "a/../b.mp3", "../b.mp3", "a//b.mp3",
                                 "épisode.mp3", "a b.mp3", "a/./b.mp3", ".hidden",
                                 "a\\b.mp3", "a.mp3" + META_SUFFIX, "x.learncast-tmp-1.mp3"])
def test_unsafe_keys_are_refused(storage: LocalStorage, tmp_path: Path, key: str) -> None:
    local = write(tmp_path / "a.mp3", b"x")
    with pytest.raises(PipelineError, match="invalid storage key"):
        storage.put(local, key, content_type="audio/mpeg", cache_control=CC, sha256="0")
    assert not any(p.is_file() for p in tmp_path.rglob("*") if p != local)


def test_check_key_accepts_plain_ascii() -> None:
    assert check_key("learning-weekly/intro-3f2a1b/intro-3f2a1b-0123456789ab.mp3")


def test_content_types() -> None:
    assert content_type_for("a/b.MP3") == "audio/mpeg"
    assert content_type_for("b.chapters.json") == "application/json+chapters"
    assert content_type_for("b.json") == "application/json"
    assert content_type_for("podcast.xml") == "application/rss+xml"
    assert content_type_for("b.srt") == "application/x-subrip"
    assert content_type_for("b.unknown") == "application/octet-stream"


def test_skip_unchanged_and_reupload_on_change(storage: LocalStorage, tmp_path: Path) -> None:
    local = write(tmp_path / "a.vtt", b"WEBVTT\n")
    item = PublishItem(local, "show/a.vtt", CC)
    [first] = publish_files(storage, [item])
    target = storage.root / "show" / "a.vtt"
    mtime = target.stat().st_mtime_ns
    [second] = publish_files(storage, [item])
    assert first.uploaded and not second.uploaded
    assert target.stat().st_mtime_ns == mtime  # not rewritten
    assert second.stored.content_type == "text/vtt; charset=utf-8"
    assert second.url.endswith("/show/a.vtt")
    write(local, b"WEBVTT\n\nNOTE changed\n")
    [third] = publish_files(storage, [item])
    assert third.uploaded and target.read_bytes() == local.read_bytes()


def test_crash_between_bytes_and_metadata_is_not_skipped(storage: LocalStorage,
                                                         tmp_path: Path) -> None:
    local = write(tmp_path / "a.mp3", b"v1")
    publish_files(storage, [PublishItem(local, "a.mp3", CC)])
    (storage.root / "a.mp3").write_bytes(b"v2")  # new bytes landed, metadata did not
    write(local, b"v2")
    [result] = publish_files(storage, [PublishItem(local, "a.mp3", CC)])
    assert result.uploaded


def test_feeds_go_last_and_only_when_everything_is_stored(storage: LocalStorage,
                                                          tmp_path: Path) -> None:
    feed_v1 = write(tmp_path / "v1.xml", b"<rss>v1</rss>")
    publish_files(storage, [], feeds=[PublishItem(feed_v1, "show/podcast.xml", "max-age=300")])
    missing = tmp_path / "missing.mp3"
    feed_v2 = write(tmp_path / "v2.xml", b"<rss>v2</rss>")
    with pytest.raises(PipelineError, match="is missing"):
        publish_files(storage, [PublishItem(missing, "show/ep/new.mp3", CC)],
                      feeds=[PublishItem(feed_v2, "show/podcast.xml", "max-age=300")])
    with pytest.raises(PipelineError, match="missing from storage"):
        publish_files(storage, [], feeds=[PublishItem(feed_v2, "show/podcast.xml", "m=1")],
                      referenced={"show/ep/never-uploaded.mp3": None})
    media = write(tmp_path / "m.mp3", b"media")
    publish_files(storage, [PublishItem(media, "show/ep/m.mp3", CC)])
    with pytest.raises(PipelineError, match="other content"):
        publish_files(storage, [], feeds=[PublishItem(feed_v2, "show/podcast.xml", "m=1")],
                      referenced={"show/ep/m.mp3": "0" * 64})
    assert (storage.root / "show" / "podcast.xml").read_bytes() == b"<rss>v1</rss>"
    results = publish_files(storage, [], feeds=[PublishItem(feed_v2, "show/podcast.xml", "m=1")],
                            referenced={"show/ep/m.mp3": sha256_file(media)})
    assert results[0].stored.content_type == "application/rss+xml"
    assert (storage.root / "show" / "podcast.xml").read_bytes() == b"<rss>v2</rss>"


def test_unwritable_public_folder_says_what_to_check(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "public"
        blocker.write_text("a file where the folder should be")
        storage = LocalStorage(blocker, "http://x")
    else:
        root = tmp_path / "public"
        root.mkdir(mode=0o500)
        storage = LocalStorage(root, "http://x")
    local = write(tmp_path / "a.mp3", b"x")
    with pytest.raises(PipelineError, match=r"paths\.public"):
        storage.put(local, "show/a.mp3", content_type="audio/mpeg", cache_control=CC,
                    sha256="0")


def test_open_storage_default_is_local(ctx: Context) -> None:
    backend = open_storage(ctx.workspace)
    assert isinstance(backend, LocalStorage) and backend.root == ctx.workspace.public
    assert backend.url("a.mp3") == "http://localhost:8080/a.mp3"
