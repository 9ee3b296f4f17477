"""A workspace whose notifications go to the test's SMTP server and webhook receiver."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.notify.servers import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    Receiver,
    SmtpServer,
    configure,
)

PRODUCER = "producer@example.com"
REVIEWER = "reviewer@example.com"


@pytest.fixture
def workspace_dir(workspace_dir: Path, smtp: SmtpServer, receiver: Receiver,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    configure(workspace_dir,
              notify=smtp.settings(events=["rejected", "failed", "review", "published"],
                                   retry_backoff_s=0.05, retry_backoff_max_s=0.2,
                                   max_attempts=3, timeout_s=1.0,
                                   review_url="https://review.example.com/"),
              show={"producers": [PRODUCER], "reviewers": [REVIEWER],
                    "webhooks": [receiver.url]})
    monkeypatch.setenv("LEARNCAST_NOTIFY__SMTP_USER", SMTP_USER)
    monkeypatch.setenv("LEARNCAST_NOTIFY__SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("LEARNCAST_NOTIFY__WEBHOOK_SECRET", WEBHOOK_SECRET)
    return workspace_dir
