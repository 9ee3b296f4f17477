"""Stage "publish": put the episode into its show's feeds, feeds last.

By now the upload stage has stored the deliverables and recorded them in `job.objects`. This
stage confirms they are still stored, remembers when the episode was first published (its
stable `pubDate` when the sidecar names no date), then rebuilds the show's feeds from the state
database, validates them and stores them (`pipeline.feeds.publish`, which owns publishing). An
episode whose sidecar date is in the future stays out of the feeds until then; `learncast
publish` or `watch` adds it.
"""

from __future__ import annotations

from pipeline.feeds.publish import publish_episode
from pipeline.models import Job
from pipeline.workspace import Context


def run(job: Job, ctx: Context) -> Job:
    return publish_episode(ctx, job)
