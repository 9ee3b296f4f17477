"""Storage benchmark: publishing and serving a 64 MiB episode.

Each case runs in a child process (`python -m bench.storage CASE ...`) measured by
`run_measured`; the S3 server (moto) and the `learncast serve` server run in this process, so
the figures are the client's side. Compare ratios within one run:
- s3 multipart (16 MiB parts) vs single-part upload of the same file,
- republishing unchanged (sha256 + HEAD, no bytes sent) vs uploading,
- serving the whole file vs a 1 MiB range (what a seeking podcast app asks for).
The `startup` case (interpreter and imports only) is the fixed cost inside every other case.
"""

from __future__ import annotations

import os
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from bench.measure import run_measured

SIZE_MB = 64
BUCKET = "bench"


def _child(case: str, endpoint: str, path: str) -> None:
    """The measured work, in the child process."""
    from pipeline.config import StorageSettings
    from pipeline.feeds.publish import PublishItem, publish_files
    from pipeline.storage.local import LocalStorage
    from pipeline.storage.s3 import S3Storage

    local = Path(path)
    item = PublishItem(local, "show/ep/episode.mp3", "public, max-age=31536000, immutable")
    if case == "startup":
        return  # interpreter + imports: subtract from the other cases' wall time
    if case == "local-put":
        publish_files(LocalStorage(local.parent / "public", "http://localhost"), [item])
    elif case.startswith("s3-"):
        threshold = 16 if case == "s3-multipart" else 5120
        settings = StorageSettings(backend="s3", bucket=BUCKET, endpoint_url=endpoint,
                                   region="us-east-1", addressing_style="path",
                                   multipart_threshold_mb=threshold,
                                   multipart_chunk_mb=16 if threshold == 16 else 5120)
        results = publish_files(S3Storage.from_settings(settings), [item])
        if case == "s3-unchanged" and results[0].uploaded:
            raise SystemExit("expected the unchanged file to be skipped")
    elif case == "serve-full":
        with urllib.request.urlopen(f"{endpoint}/show/ep/episode.mp3") as resp:
            while resp.read(1 << 20):
                pass
    elif case == "serve-range":
        req = urllib.request.Request(f"{endpoint}/show/ep/episode.mp3",
                                     headers={"Range": "bytes=33554432-34603007"})
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 206 and len(resp.read()) == 1 << 20
    else:
        raise SystemExit(f"unknown case {case}")


def run(workdir: Path) -> list[dict[str, Any]]:
    import boto3
    from moto.server import ThreadedMotoServer

    from pipeline.serve import make_server
    from pipeline.storage.local import LocalStorage

    workdir.mkdir(parents=True, exist_ok=True)
    episode = workdir / "episode.mp3"
    with open(episode, "wb") as fh:
        for _ in range(SIZE_MB):
            fh.write(os.urandom(1 << 20))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_EC2_METADATA_DISABLED": "true"}
    env.pop("AWS_PROFILE", None)
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    s3_url = f"http://{host}:{port}"
    public = workdir / "public"
    LocalStorage(public, "http://x").put(episode, "show/ep/episode.mp3",
                                         content_type="audio/mpeg", cache_control="no-cache",
                                         sha256="0" * 64)
    server = make_server(public, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    serve_url = server.url
    rows: list[dict[str, Any]] = []
    try:
        boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1").create_bucket(
            Bucket=BUCKET)
        cases = [("startup", ""), ("local-put", ""), ("s3-single", s3_url),
                 ("s3-multipart", s3_url), ("s3-unchanged", s3_url), ("serve-full", serve_url),
                 ("serve-range", serve_url)]
        for case, endpoint in cases:
            m = run_measured([sys.executable, "-m", "bench.storage", case, endpoint,
                              str(episode)], env=env, cwd=Path(__file__).resolve().parent.parent)
            row = {"suite": "storage", "case": case, "tool": "learncast",
                   "size_mb": {"serve-range": 1, "startup": 0}.get(case, SIZE_MB),
                   **m.to_dict()}
            if m.wall_s > 0 and row["size_mb"]:
                row["mb_per_s"] = round(row["size_mb"] / m.wall_s, 1)
            rows.append(row)
    finally:
        server.shutdown()
        server.server_close()
        moto.stop()
    by_case = {r["case"]: r for r in rows}
    for case, base in (("s3-multipart", "s3-single"), ("s3-unchanged", "s3-single"),
                       ("serve-range", "serve-full")):
        if by_case[base]["wall_s"]:
            by_case[case]["wall_ratio"] = round(by_case[case]["wall_s"]
                                                / by_case[base]["wall_s"], 3)
    return rows


if __name__ == "__main__":
    _child(*sys.argv[1:4])
