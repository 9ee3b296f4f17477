"""The s3 backend against a real S3 HTTP server (moto), through boto3 over HTTP with SigV4."""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.request
from pathlib import Path

import pytest

from pipeline.config import ConfigError, Settings, load_settings
from pipeline.errors import PipelineError, RetryableError
from pipeline.feeds.publish import PublishItem, publish_files
from pipeline.fsutil import sha256_file
from pipeline.storage import BACKENDS, open_storage
from pipeline.storage.s3 import S3Storage, translate_error
from pipeline.workspace import open_workspace
from tests.storage.s3fixtures import (
    BUCKET,
    SECRET_KEY,
    FaultProxy,
    fail_first,
    raw_client,
    s3_settings,
)

MEDIA_CC = "public, max-age=31536000, immutable"
FEED_CC = "public, max-age=300"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_registry_has_both_backends() -> None:
    assert set(BACKENDS) == {"local", "s3"}


def test_content_types_and_cache_headers_as_stored(s3_storage: S3Storage, moto_server: str,
                                                   tmp_path: Path) -> None:
    files = {
        "show/ep/ep-1.mp3": ("audio/mpeg", MEDIA_CC),
        "show/ep/ep-1.mp4": ("video/mp4", MEDIA_CC),
        "show/ep/ep-1.vtt": ("text/vtt; charset=utf-8", MEDIA_CC),
        "show/ep/ep-1.srt": ("application/x-subrip", MEDIA_CC),
        "show/ep/ep-1.html": ("text/html; charset=utf-8", MEDIA_CC),
        "show/ep/ep-1.chapters.json": ("application/json+chapters", MEDIA_CC),
        "show/podcast.xml": ("application/rss+xml", FEED_CC),
    }
    client = raw_client(moto_server)
    for i, (key, (ctype, cache)) in enumerate(files.items()):
        local = write(tmp_path / f"f{i}", f"payload {key}".encode())
        [result] = publish_files(s3_storage, [PublishItem(local, key, cache)])
        assert result.uploaded
        head = client.head_object(Bucket=BUCKET, Key=f"podcasts/{key}")
        assert head["ContentType"] == ctype
        assert head["CacheControl"] == cache
        assert head["Metadata"]["sha256"] == sha256_file(local)
        stored = s3_storage.stat(key)
        assert stored is not None and stored.content_type == ctype
        assert stored.cache_control == cache and stored.size == local.stat().st_size


def test_public_url_serves_ranges_with_206(moto_server: str, s3_bucket: str,
                                           tmp_path: Path) -> None:
    # Anonymous GETs, as podcast apps make them: the object must be public-read.
    s3_storage = S3Storage.from_settings(s3_settings(moto_server, acl="public-read"))
    data = os.urandom(10_000)
    local = write(tmp_path / "a.mp3", data)
    publish_files(s3_storage, [PublishItem(local, "show/ep/a.mp3", MEDIA_CC)])
    url = s3_storage.url("show/ep/a.mp3")
    assert url.endswith(f"/{BUCKET}/podcasts/show/ep/a.mp3")  # the bucket's own URL
    req = urllib.request.Request(url, headers={"Range": "bytes=100-199"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == "bytes 100-199/10000"
        assert resp.read() == data[100:200]
    req = urllib.request.Request(url, headers={"Range": "bytes=-50"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 206 and resp.read() == data[-50:]
    got = s3_storage.client.get_object(Bucket=BUCKET, Key="podcasts/show/ep/a.mp3",
                                       Range="bytes=9990-")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == data[9990:]


def test_multipart_upload_over_20_mb_round_trips(moto_server: str, s3_bucket: str,
                                                 tmp_path: Path) -> None:
    storage = S3Storage.from_settings(s3_settings(moto_server, multipart_threshold_mb=5,
                                                  multipart_chunk_mb=5))
    local = write(tmp_path / "big.mp4", os.urandom(21 * 1024 * 1024 + 123))
    sha = sha256_file(local)
    [result] = publish_files(storage, [PublishItem(local, "show/ep/big.mp4", MEDIA_CC)])
    assert result.uploaded and result.stored.sha256 == sha
    client = raw_client(moto_server)
    head = client.head_object(Bucket=BUCKET, Key="podcasts/show/ep/big.mp4")
    assert head["ETag"].strip('"').endswith("-5")  # five 5 MiB parts: it was multipart
    assert head["ContentLength"] == local.stat().st_size
    body = client.get_object(Bucket=BUCKET, Key="podcasts/show/ep/big.mp4")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha


def test_second_publish_uploads_nothing(moto_server: str, s3_bucket: str,
                                        tmp_path: Path) -> None:
    items = [PublishItem(write(tmp_path / f"{n}.bin", os.urandom(2000)), f"show/ep/{n}.mp3",
                         MEDIA_CC) for n in range(3)]
    with FaultProxy(moto_server, lambda *_: None) as proxy:
        storage = S3Storage.from_settings(s3_settings(proxy.url))
        first = publish_files(storage, items)
        puts_first = proxy.count("PUT")
        second = publish_files(storage, items)
        assert all(r.uploaded for r in first) and puts_first == 3
        assert not any(r.uploaded for r in second)
        assert proxy.count("PUT") == puts_first  # not one byte sent again
        # The same bytes under a new Cache-Control are sent again (headers are content too).
        third = publish_files(storage, [PublishItem(items[0].local, items[0].key, FEED_CC)])
        assert third[0].uploaded and proxy.count("PUT") == puts_first + 1


def test_503s_are_absorbed_by_boto3_retries(moto_server: str, s3_bucket: str,
                                            tmp_path: Path) -> None:
    local = write(tmp_path / "a.mp3", b"x" * 5000)
    with FaultProxy(moto_server, fail_first(1, "503")) as proxy:
        storage = S3Storage.from_settings(s3_settings(proxy.url, max_attempts=3))
        [result] = publish_files(storage, [PublishItem(local, "show/a.mp3", MEDIA_CC)])
        assert result.uploaded and proxy.count(outcome="503") == 1
    assert raw_client(moto_server).head_object(Bucket=BUCKET, Key="podcasts/show/a.mp3")


@pytest.mark.parametrize("how", ["503", "drop"])
def test_persistent_transient_faults_become_retryable(moto_server: str, s3_bucket: str,
                                                      tmp_path: Path, how: str) -> None:
    local = write(tmp_path / "a.mp3", b"y" * 5000)
    with FaultProxy(moto_server, fail_first(4, how)) as proxy:
        storage = S3Storage.from_settings(s3_settings(proxy.url, max_attempts=2))
        with pytest.raises(RetryableError) as info:
            publish_files(storage, [PublishItem(local, "show/a.mp3", MEDIA_CC)])
        assert "retried" in str(info.value)
        # What the runner does next: try again once the faults have passed.
        while proxy.count() < 4:
            with pytest.raises(RetryableError):
                publish_files(storage, [PublishItem(local, "show/a.mp3", MEDIA_CC)])
        [result] = publish_files(storage, [PublishItem(local, "show/a.mp3", MEDIA_CC)])
        assert result.uploaded
    assert s3_storage_has(moto_server, "podcasts/show/a.mp3", b"y" * 5000)


def s3_storage_has(endpoint: str, key: str, data: bytes) -> bool:
    body = raw_client(endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return bool(body == data)


def test_missing_bucket_fails_fast_naming_the_setting(moto_server: str, s3_bucket: str,
                                                      tmp_path: Path) -> None:
    storage = S3Storage.from_settings(s3_settings(moto_server, bucket="no-such-bucket"))
    local = write(tmp_path / "a.mp3", b"z")
    with pytest.raises(PipelineError) as info:
        publish_files(storage, [PublishItem(local, "show/a.mp3", MEDIA_CC)])
    assert not isinstance(info.value, RetryableError)
    assert "NoSuchBucket" in str(info.value) and "storage.bucket" in str(info.value)


def test_unreachable_endpoint_is_retryable(tmp_path: Path, aws_env: dict[str, str]) -> None:
    from tests.storage.s3fixtures import free_port

    storage = S3Storage.from_settings(
        s3_settings(f"http://127.0.0.1:{free_port()}", max_attempts=1, timeout_s=2))
    with pytest.raises(RetryableError, match=r"storage\.endpoint_url"):
        storage.stat("show/a.mp3")


def test_access_denied_is_permanent(moto_server: str, s3_bucket: str, tmp_path: Path) -> None:
    local = write(tmp_path / "a.mp3", b"q" * 100)
    deny_puts = lambda method, _path, _n: "403" if method == "PUT" else None  # noqa: E731
    with FaultProxy(moto_server, deny_puts) as proxy:
        storage = S3Storage.from_settings(s3_settings(proxy.url, max_attempts=3))
        with pytest.raises(PipelineError) as info:
            publish_files(storage, [PublishItem(local, "show/a.mp3", MEDIA_CC)])
        assert proxy.count("PUT") == 1  # permanent: boto3 did not retry it either
    assert not isinstance(info.value, RetryableError)
    assert "AccessDenied" in str(info.value) and "AWS_ACCESS_KEY_ID" in str(info.value)


def test_feed_untouched_when_a_media_upload_fails(moto_server: str, s3_bucket: str,
                                                  tmp_path: Path) -> None:
    old_media = write(tmp_path / "old.mp3", b"old media")
    old_feed = write(tmp_path / "v1.xml", b"<rss>v1</rss>")
    feed_key = "show/podcast.xml"
    with FaultProxy(moto_server, lambda *_: None) as ok:
        publish_files(S3Storage.from_settings(s3_settings(ok.url)),
                      [PublishItem(old_media, "show/ep1/old.mp3", MEDIA_CC)],
                      feeds=[PublishItem(old_feed, feed_key, FEED_CC)])
    new_media = write(tmp_path / "new.mp3", b"new media")
    new_feed = write(tmp_path / "v2.xml", b"<rss>v2</rss>")
    deny_new = lambda method, path, _n: "403" if method == "PUT" and "new.mp3" in path \
        else None  # noqa: E731
    with FaultProxy(moto_server, deny_new) as proxy:
        storage = S3Storage.from_settings(s3_settings(proxy.url))
        with pytest.raises(PipelineError, match="AccessDenied"):
            publish_files(storage, [PublishItem(new_media, "show/ep2/new.mp3", MEDIA_CC)],
                          feeds=[PublishItem(new_feed, feed_key, FEED_CC)])
        assert not any("podcast.xml" in path for _, path, _ in proxy.log)
    assert s3_storage_has(moto_server, f"podcasts/{feed_key}", b"<rss>v1</rss>")
    # A feed pointing at an object that is not stored is refused, too.
    with pytest.raises(PipelineError, match="missing from storage"):
        publish_files(S3Storage.from_settings(s3_settings(moto_server)), [],
                      feeds=[PublishItem(new_feed, feed_key, FEED_CC)],
                      referenced={"show/ep2/new.mp3": None})
    assert s3_storage_has(moto_server, f"podcasts/{feed_key}", b"<rss>v1</rss>")


def test_delete_and_stat(s3_storage: S3Storage, tmp_path: Path) -> None:
    local = write(tmp_path / "a.vtt", b"WEBVTT\n")
    publish_files(s3_storage, [PublishItem(local, "show/ep/a.vtt", MEDIA_CC)])
    assert s3_storage.stat("show/ep/a.vtt") is not None
    s3_storage.delete("show/ep/a.vtt")
    assert s3_storage.stat("show/ep/a.vtt") is None
    s3_storage.delete("show/ep/a.vtt")  # deleting twice is fine


def test_public_base_url_and_acl(moto_server: str, s3_bucket: str, tmp_path: Path) -> None:
    storage = S3Storage.from_settings(s3_settings(
        moto_server, public_base_url="https://cdn.example.org/media/", acl="public-read"))
    local = write(tmp_path / "a.mp3", b"acl")
    [result] = publish_files(storage, [PublishItem(local, "show/a.mp3", MEDIA_CC)])
    assert result.url == "https://cdn.example.org/media/podcasts/show/a.mp3"
    acl = raw_client(moto_server).get_object_acl(Bucket=BUCKET, Key="podcasts/show/a.mp3")
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ"
               for g in acl["Grants"])
    virtual = S3Storage.from_settings(s3_settings("https://minio.example.org:9000",
                                                  addressing_style="virtual", prefix=""))
    assert virtual.url("a/b.mp3") == f"https://{BUCKET}.minio.example.org:9000/a/b.mp3"
    aws = S3Storage.from_settings(s3_settings("", prefix=""))
    assert aws.url("a.mp3") == f"https://{BUCKET}.s3.eu-west-1.amazonaws.com/a.mp3"


def test_workspace_opens_the_s3_backend(tmp_path: Path, s3_workspace_env: dict[str, str],
                                        workspace_dir: Path) -> None:
    ws = open_workspace(workspace_dir)
    backend = open_storage(ws)
    assert isinstance(backend, S3Storage) and backend.prefix == "podcasts/"


def test_credentials_cannot_be_put_in_the_config(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "config").mkdir(parents=True)
    (root / "config" / "learncast.toml").write_text(
        '[storage]\nbackend = "s3"\nbucket = "b"\naws_secret_access_key = "abc"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'storage\.aws_secret_access_key'") as info:
        load_settings(root, env={})
    assert "abc" not in str(info.value)  # the value is not echoed back
    assert not any("secret" in name or "access_key" in name
                   for name in Settings.model_fields["storage"].annotation.model_fields)  # type: ignore[union-attr]


def test_s3_requires_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage\.bucket is required"):
        load_settings(tmp_path, env={"LEARNCAST_STORAGE__BACKEND": "s3"})


def test_unknown_errors_are_not_swallowed() -> None:
    with pytest.raises(KeyError):
        translate_error(KeyError("bug"), "upload")


def test_no_secret_in_logs_of_a_failing_upload(moto_server: str, s3_bucket: str,
                                               tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    local = write(tmp_path / "a.mp3", b"s" * 100)
    caplog.set_level(logging.DEBUG)  # everything, botocore's own debug output included
    with FaultProxy(moto_server, fail_first(10, "403")) as proxy:
        storage = S3Storage.from_settings(s3_settings(proxy.url))
        with pytest.raises(PipelineError) as info:
            publish_files(storage, [PublishItem(local, "show/a.mp3", MEDIA_CC)])
    assert caplog.records  # the check below looks at real log output
    assert SECRET_KEY not in str(info.value) and SECRET_KEY not in caplog.text


@pytest.mark.parametrize(("key", "value"), [("PUBLIC_BASE_URL", "media.example.org/pod"),
                                            ("PUBLIC_BASE_URL", "/pod"),
                                            ("ENDPOINT_URL", "minio:9000")])
def test_urls_must_be_absolute(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match="absolute http"):
        load_settings(tmp_path, env={f"LEARNCAST_STORAGE__{key}": value})


def test_missing_credentials_say_where_to_put_them(moto_server: str, s3_bucket: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = S3Storage.from_settings(s3_settings(moto_server))
    with pytest.raises(PipelineError, match="no usable credentials") as info:
        storage.stat("show/a.mp3")
    assert not isinstance(info.value, RetryableError)
    assert "AWS_PROFILE" in str(info.value)


def test_unknown_profile_is_a_clear_error(aws_env: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(PipelineError, match="no usable credentials"):
        S3Storage.from_settings(s3_settings("http://127.0.0.1:9"))
