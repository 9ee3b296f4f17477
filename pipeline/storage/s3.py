"""S3-compatible object storage (AWS S3, MinIO, Cloudflare R2, Ceph, Wasabi) through boto3.

Credentials come only from boto3's standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_PROFILE and ~/.aws, SSO, instance and container roles): Learncast's config has no key
for them, so a secret can never end up in a committed `learncast.toml`, and no message or log
line here ever includes one.

boto3 retries each request a few times itself (`storage.max_attempts`); what still fails is
sorted at this boundary: transient faults (connection resets, timeouts, 5xx, throttling)
become `RetryableError`, which the runner retries with backoff; permanent ones (no such
bucket, access denied, wrong region) become `PipelineError` naming the setting to check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore import exceptions as bx
from botocore.config import Config

from pipeline import __version__
from pipeline.config import DEFAULT_PUBLIC_BASE_URL, StorageSettings
from pipeline.errors import PipelineError, RetryableError
from pipeline.fsutil import atomic_path
from pipeline.storage.base import PRIVATE_PREFIX, StoredObject, check_key
from pipeline.workspace import Workspace

log = logging.getLogger(__name__)

MIB = 1024 * 1024

#: S3 error codes worth retrying: the service says "later", not "never".
TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "Throttling", "ThrottlingException",
    "RequestTimeout", "RequestTimeoutException", "TooManyRequests", "RequestLimitExceeded",
    "OperationAborted", "503", "500", "502", "504", "429",
}

CREDENTIALS_ADVICE = (
    "Check the credentials boto3 finds (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
    "~/.aws/credentials or the instance role; Learncast never reads keys from its config) and "
    "that they may write to storage.bucket"
)

#: What to check for each permanent error code.
ADVICE: dict[str, str] = {
    "NoSuchBucket": "the bucket does not exist: check storage.bucket (and storage.endpoint_url "
                    "/ storage.region), or create the bucket",
    "InvalidBucketName": "check storage.bucket: it is not a valid bucket name",
    "AccessDenied": f"access denied. {CREDENTIALS_ADVICE}",
    "403": f"access denied. {CREDENTIALS_ADVICE}",
    "AllAccessDisabled": "all access to this bucket is disabled: check storage.bucket",
    "InvalidAccessKeyId": f"the access key id is not known to the service. {CREDENTIALS_ADVICE}",
    "SignatureDoesNotMatch": f"the secret key is wrong. {CREDENTIALS_ADVICE}",
    "ExpiredToken": f"the session token has expired. {CREDENTIALS_ADVICE}",
    "InvalidToken": f"the session token is invalid. {CREDENTIALS_ADVICE}",
    "AuthorizationHeaderMalformed": "the request was signed for the wrong region: check "
                                    "storage.region",
    "PermanentRedirect": "the bucket lives in another region or endpoint: check storage.region "
                         "and storage.endpoint_url",
    "301": "the bucket lives in another region or endpoint: check storage.region and "
           "storage.endpoint_url",
    "AccessControlListNotSupported": "the bucket has ACLs disabled: set storage.acl = \"none\" "
                                     "and grant public reads with a bucket policy",
    "RequestTimeTooSkewed": "this machine's clock is off: synchronise it (NTP)",
    "EntityTooLarge": "the file is larger than the service accepts in one request: lower "
                      "storage.multipart_threshold_mb",
}


def _code(exc: bx.ClientError) -> tuple[str, int, str]:
    err = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return str(err.get("Code") or status), status, str(err.get("Message") or "").strip()


def translate_error(exc: BaseException, what: str) -> PipelineError:
    """Sort a boto3/botocore failure into our exception family with a message that helps."""
    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, bx.ClientError):
        exc = exc.__context__
    if isinstance(exc, bx.ClientError):
        code, status, message = _code(exc)
        detail = f"{code}" + (f": {message}" if message and message != code else "")
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return RetryableError(f"S3 {what} failed ({detail}); the service is busy or "
                                  "unavailable, so it is retried")
        advice = ADVICE.get(code, "check the storage settings ([storage] in "
                                  "config/learncast.toml) and the bucket's permissions")
        return PipelineError(f"S3 {what} failed ({detail}): {advice}")
    if isinstance(exc, bx.SSLError):
        return PipelineError(f"S3 {what} failed: TLS error ({exc}). Check storage.endpoint_url "
                             "(https with a valid certificate, or http for a local service)")
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError
                  | bx.CredentialRetrievalError | bx.ProfileNotFound):
        return PipelineError(f"S3 {what} failed: no usable credentials ({type(exc).__name__}). "
                             f"{CREDENTIALS_ADVICE}")
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError | bx.IncompleteReadError
                  | bx.ChecksumError | ConnectionError | TimeoutError):
        return RetryableError(f"S3 {what} failed: {type(exc).__name__} ({exc}); the connection "
                              "to storage.endpoint_url failed, so it is retried")
    if isinstance(exc, S3UploadFailedError):
        return PipelineError(f"S3 {what} failed: {exc}. Check the [storage] settings")
    if isinstance(exc, bx.BotoCoreError):
        return PipelineError(f"S3 {what} failed: {exc}. Check the [storage] settings")
    if isinstance(exc, OSError):
        return PipelineError(f"S3 {what} failed: could not read the local file ({exc})")
    raise exc


@dataclass
class S3Storage:
    bucket: str
    prefix: str
    base_url: str
    client: Any
    transfer: TransferConfig
    acl: str = "none"
    name: str = "s3"

    @classmethod
    def from_workspace(cls, ws: Workspace) -> S3Storage:
        return cls.from_settings(ws.settings.storage)

    @classmethod
    def from_settings(cls, s: StorageSettings) -> S3Storage:
        """One client per process: boto3 clients are thread-safe and pool connections."""
        try:
            session = boto3.session.Session()  # the standard credential chain, nothing of ours
        except bx.BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
            raise translate_error(exc, "setup") from exc
        region = s.region or session.region_name or "us-east-1"
        config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": s.addressing_style},
            retries={"total_max_attempts": s.max_attempts, "mode": "standard"},
            connect_timeout=s.timeout_s,
            read_timeout=s.timeout_s,
            user_agent_extra=f"learncast/{__version__}",
        )
        try:
            client = session.client("s3", endpoint_url=s.endpoint_url or None, config=config)
        except ValueError as exc:  # botocore's own check of endpoint_url
            raise PipelineError(f"storage.endpoint_url {s.endpoint_url!r} is not usable: {exc}; "
                                "give a full URL such as https://minio.example.com:9000") from exc
        transfer = TransferConfig(multipart_threshold=s.multipart_threshold_mb * MIB,
                                  multipart_chunksize=s.multipart_chunk_mb * MIB)
        prefix = s.prefix.strip("/")
        return cls(bucket=s.bucket, prefix=f"{prefix}/" if prefix else "",
                   base_url=public_base_url(s, region), client=client, transfer=transfer,
                   acl=s.acl)

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, local: Path, key: str, *, content_type: str, cache_control: str,
            sha256: str) -> StoredObject:
        full = self._full(key)
        extra: dict[str, Any] = {"ContentType": content_type, "CacheControl": cache_control,
                                 "Metadata": {"sha256": sha256}}
        if self.acl != "none" and not key.startswith(PRIVATE_PREFIX):
            extra["ACL"] = self.acl  # a private show's objects are never made public
        size = local.stat().st_size
        log.debug("[storage] uploading %s (%d bytes) to s3://%s/%s", local.name, size,
                  self.bucket, full)
        try:
            self.client.upload_file(str(local), self.bucket, full, ExtraArgs=extra,
                                    Config=self.transfer)
        except Exception as exc:
            raise translate_error(exc, f"upload of {key} to bucket {self.bucket}") from exc
        stored = self.stat(key)
        if stored is None or stored.size != size or stored.sha256 != sha256:
            raise RetryableError(f"S3 upload of {key} to bucket {self.bucket} was not confirmed "
                                 f"(the service reports {stored}); it is retried")
        return stored

    def stat(self, key: str) -> StoredObject | None:
        full = self._full(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        except bx.ClientError as exc:
            code, status, _ = _code(exc)
            if status == 404 or code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise translate_error(exc, f"check of {key} in bucket {self.bucket}") from exc
        except Exception as exc:
            raise translate_error(exc, f"check of {key} in bucket {self.bucket}") from exc
        return StoredObject(key=key, size=int(head["ContentLength"]),
                            sha256=head.get("Metadata", {}).get("sha256"),
                            content_type=head.get("ContentType"),
                            cache_control=head.get("CacheControl"))

    def url(self, key: str) -> str:
        return f"{self.base_url}/{self._full(key)}"

    def presign(self, key: str, seconds: int) -> str:
        """A URL that fetches `key` without credentials for `seconds` (SigV4 query string,
        straight to the bucket's endpoint): how a private show's media reach a learner."""
        try:
            return str(self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._full(key)},
                ExpiresIn=seconds))
        except Exception as exc:
            raise translate_error(exc, f"signing a URL for {key}") from exc

    def get_bytes(self, key: str, limit: int) -> bytes:
        """The bytes of a small object (a feed), at most `limit` of them."""
        full = self._full(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            with response["Body"] as body:
                return bytes(body.read(limit))
        except bx.ClientError as exc:
            code, status, _ = _code(exc)
            if status == 404 or code in ("404", "NoSuchKey", "NotFound"):
                raise PipelineError(f"{key} is not in bucket {self.bucket}") from exc
            raise translate_error(exc, f"download of {key} from bucket {self.bucket}") from exc
        except Exception as exc:
            raise translate_error(exc, f"download of {key} from bucket {self.bucket}") from exc

    def fetch(self, key: str, local: Path) -> None:
        full = self._full(key)
        try:
            with atomic_path(local) as tmp:
                self.client.download_file(self.bucket, full, str(tmp), Config=self.transfer)
        except bx.ClientError as exc:
            code, status, _ = _code(exc)
            if status == 404 or code in ("404", "NoSuchKey", "NotFound"):
                raise PipelineError(f"{key} is not in bucket {self.bucket}") from exc
            raise translate_error(exc, f"download of {key} from bucket {self.bucket}") from exc
        except PipelineError:
            raise
        except Exception as exc:
            raise translate_error(exc, f"download of {key} from bucket {self.bucket}") from exc

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise translate_error(exc, f"delete of {key} from bucket {self.bucket}") from exc


def public_base_url(s: StorageSettings, region: str) -> str:
    """`public_base_url` as configured, or the bucket's own URL when left at the default."""
    if s.public_base_url.rstrip("/") != DEFAULT_PUBLIC_BASE_URL:
        return s.public_base_url.rstrip("/")
    if s.endpoint_url:
        parts = urlsplit(s.endpoint_url.rstrip("/"))
        if s.addressing_style == "virtual":
            return f"{parts.scheme}://{s.bucket}.{parts.netloc}{parts.path}"
        return f"{s.endpoint_url.rstrip('/')}/{s.bucket}"
    return f"https://{s.bucket}.s3.{region}.amazonaws.com"
