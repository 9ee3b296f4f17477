"""SigV4 for real: a moto server (own process) that verifies signatures after setup.

moto checks signatures only when started with INITIAL_NO_AUTH_ACTION_COUNT: the first N
actions (creating an IAM user, its policy, its key and the bucket) are free, everything after
must be signed with that user's key. That mode breaks anonymous GETs, so it lives here, apart
from the main server.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from pipeline.errors import PipelineError, RetryableError
from pipeline.feeds.publish import PublishItem, publish_files
from pipeline.storage.s3 import S3Storage
from tests.storage.s3fixtures import BUCKET, REGION, free_port, s3_settings

SETUP_ACTIONS = 4  # create_user, put_user_policy, create_access_key, create_bucket


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(endpoint, access key id, secret) of a signature-checking moto server."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}
    log = tmp_path_factory.mktemp("moto-auth") / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], env=env, stdout=fh, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=10).close()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        setup = {"endpoint_url": endpoint, "region_name": REGION,
                 "aws_access_key_id": "AKIASETUPONLY0000000",
                 "aws_secret_access_key": "setup-only"}
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="publisher")
        iam.put_user_policy(UserName="publisher", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="publisher")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _use_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key_id: str,
                     secret: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_right_key_is_accepted(auth_server: tuple[str, str, str], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, key_id, secret = auth_server
    _use_credentials(monkeypatch, tmp_path, key_id, secret)
    local = tmp_path / "a.mp3"
    local.write_bytes(b"signed" * 100)
    storage = S3Storage.from_settings(s3_settings(endpoint))
    [result] = publish_files(storage, [PublishItem(local, "show/signed.mp3", "max-age=60")])
    assert result.uploaded and storage.stat("show/signed.mp3") is not None


def test_wrong_secret_is_rejected_with_a_clear_error(auth_server: tuple[str, str, str],
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    endpoint, key_id, secret = auth_server
    wrong = "wrong-" + secret[::-1]
    _use_credentials(monkeypatch, tmp_path, key_id, wrong)
    caplog.set_level(logging.DEBUG)
    local = tmp_path / "a.mp3"
    local.write_bytes(b"unsigned" * 100)
    storage = S3Storage.from_settings(s3_settings(endpoint))
    with pytest.raises(PipelineError) as info:
        storage.put(local, "show/rejected.mp3", content_type="audio/mpeg",
                    cache_control="max-age=60", sha256="0" * 64)
    message = str(info.value)
    assert not isinstance(info.value, RetryableError)
    assert "SignatureDoesNotMatch" in message and "secret key is wrong" in message
    assert "AWS_SECRET_ACCESS_KEY" in message  # says where the credentials come from
    assert wrong not in message and wrong not in caplog.text
    assert caplog.records  # botocore's debug log was captured and checked
