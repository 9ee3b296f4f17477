"""Stage "upload": the episode's deliverables into storage, before any feed points at them.

Media, captions, transcripts and chapters are stored under content-addressed keys (see
`pipeline.feeds.publish`, which owns publishing); what storage confirmed is recorded in
`job.objects`, which the feeds use and nothing else. Unchanged objects are not sent again.
"""

from __future__ import annotations

from pipeline.artifacts import PUBLISHED, Artifact
from pipeline.feeds.publish import upload_episode
from pipeline.models import Job
from pipeline.workspace import Context

NEEDS = (Artifact.AUDIO,)
USES = tuple(a for a in PUBLISHED if a is not Artifact.AUDIO)


def run(job: Job, ctx: Context) -> Job:
    return upload_episode(ctx, job, ctx.inputs)
