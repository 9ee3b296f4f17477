"""Reading the bucket's server access logs (`[stats] s3_logs = "s3://bucket/prefix/"`).

S3 delivers them as many small objects under a prefix; each is read whole (they are small)
with the storage backend's client, so the same credentials and endpoint apply.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from pipeline.errors import PipelineError
from pipeline.stats.logs import Request, parse_s3_lines
from pipeline.workspace import Context

log = logging.getLogger(__name__)


def read_s3_logs(ctx: Context) -> list[Request]:
    from pipeline.storage.s3 import S3Storage, translate_error

    storage = ctx.storage
    if not isinstance(storage, S3Storage):
        raise PipelineError("stats.s3_logs is set but storage.backend is not s3; clear "
                            "stats.s3_logs, or use the s3 backend")
    where = urlsplit(ctx.settings.stats.s3_logs)
    bucket, prefix = where.netloc, where.path.lstrip("/")
    requests: list[Request] = []
    try:
        pages = storage.client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                         Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                body = storage.client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
                with body:
                    text = body.read().decode("utf-8", "replace")
                requests += parse_s3_lines(text.splitlines(), prefix=storage.prefix)
    except PipelineError:
        raise
    except Exception as exc:
        raise translate_error(exc, f"reading access logs from s3://{bucket}/{prefix}") from exc
    log.info("[stats] %d request(s) read from s3://%s/%s", len(requests), bucket, prefix)
    return requests
