"""Several machines: stages as Celery tasks on a Redis broker (the embedded runner's peer).

`[queue] url` switches it on. Then `learncast run`/`watch` ingest on the machine that sees the
inbox and enqueue (`coordinator`), and `learncast worker` processes (`worker`) run one stage
per task, routed by what the stage needs (`routing`: transcription to `asr`, ffmpeg work to
`media`, upload and feeds to `publish`). Workers share no disk: each has its own workspace,
and the files a stage reads travel through the storage backend as working copies under a
private prefix (`transfer`). The state store (PostgreSQL) is the one source of truth: a stage
is claimed there before it runs and marked done there when its outputs are stored, so a task
delivered twice (acks are late; a killed worker's task is delivered again) never runs a stage
twice at once and never redoes one that is done.
"""
