"""The review gate: nothing is uploaded or published before a reviewer approves the captions
(and accepts or edits suggested chapters).

Placed just before `upload`. Shows set `review = "after-approval"` (the episode waits in
`awaiting-review` until someone approves its current caption revision on `learncast review`)
or `"immediate"` (it passes at once; later edits republish). Approving queues the episode
again, and the runner resumes here, so this stage only has to look up the audit trail.
"""

from __future__ import annotations

import logging

from pipeline.artifacts import Artifact
from pipeline.errors import HoldForReview
from pipeline.models import Job, ReviewRecord
from pipeline.review import service
from pipeline.workspace import Context

log = logging.getLogger(__name__)

USES = (Artifact.VTT,)


def run(job: Job, ctx: Context) -> Job:
    mode = service.review_mode(ctx, job)
    if mode == "immediate":
        return job.with_results(review=ReviewRecord(mode=mode))
    approved = service.approval(ctx, job)
    revision = service.revision(job)
    if approved is None:
        log.info("[review] %s: captions revision %d wait for approval", job.id, revision)
        raise HoldForReview(f"captions revision {revision} wait for a reviewer's approval; "
                            "open `learncast review` to check and approve them")
    if service.chapters_pending(job):
        log.info("[review] %s: suggested chapters wait for a reviewer", job.id)
        raise HoldForReview("the suggested chapters wait for a reviewer to accept or edit them; "
                            "open `learncast review`")
    return job.with_results(review=ReviewRecord(mode=mode, revision=revision,
                                                reviewer=approved["reviewer"],
                                                at=approved["at"]))
