"""One exception family for the whole pipeline.

Stages wrap third-party failures (ffmpeg, boto3, whisper) at the boundary into these, so the
runner needs to know only two things: is it worth retrying, and what should the producer read.
Every message says what was wrong *and* what to do about it.
"""

from __future__ import annotations


class PipelineError(Exception):
    """A recording cannot go further; the message is shown to the producer as is."""


class RetryableError(PipelineError):
    """A transient fault (storage timeout, throttling): the runner retries with backoff."""


class ConfigError(PipelineError):
    """The configuration is invalid; the CLI exits 2 with this message."""


class ToolError(PipelineError):
    """A tool the pipeline runs (ffmpeg) could not be started or died of a signal.

    Not the recording's fault: the file stays in the inbox or its episode stays queued, and
    the run stops with this message (the CLI exits 2) instead of blaming the producer.
    """


class InputError(PipelineError):
    """The dropped recording or its sidecar is unusable; it goes to `failed/` with this reason."""


class HoldForReview(Exception):
    """Raised by the review gate: the episode waits for a reviewer's approval.

    Not a PipelineError: nothing failed. The runner marks the episode `awaiting-review` and
    leaves the gate stage unfinished; approving the episode queues it again.
    """
