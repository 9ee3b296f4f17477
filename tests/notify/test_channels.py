"""E-mail over real SMTP servers (plain, STARTTLS, SMTPS, with a login) and signed webhooks
to a real HTTP receiver; what fails, how it says so, and that no secret is ever shown."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from pipeline.config import NotifySettings
from pipeline.notify.channels import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryError,
    post_webhook,
    send_email,
    sign,
    verify,
)
from tests.notify.servers import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    Receiver,
    start_smtp,
)
from tests.storage.s3fixtures import free_port

CREDENTIALS = {"LEARNCAST_NOTIFY__SMTP_USER": SMTP_USER,
               "LEARNCAST_NOTIFY__SMTP_PASSWORD": SMTP_PASSWORD}


# aiosmtpd warns about AUTH on a connection it did not upgrade itself; SMTPS is TLS throughout
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize(("security", "login"), [("none", False), ("starttls", True),
                                                 ("ssl", True), ("starttls", False)])
def test_email_is_delivered_over_each_kind_of_connection(
        certificate: tuple[Path, Path], security: str, login: bool) -> None:
    controller, server = start_smtp(security, certificate, login=login)
    try:
        settings = NotifySettings(**server.settings())
        send_email(settings, "ana@example.com", "Captions await review", "Open the link.",
                   message_id="<abc@learncast>", env=CREDENTIALS if login else {})
    finally:
        controller.stop()
    [msg] = server.mailbox.messages
    assert (msg["To"], msg["From"], msg["Subject"]) == (
        "ana@example.com", "learncast@example.com", "Captions await review")
    assert msg["Message-ID"] == "<abc@learncast>" and msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content().strip() == "Open the link."
    assert server.mailbox.logins == ([SMTP_USER] if login else [])


def test_starttls_is_required_never_skipped(certificate: tuple[Path, Path]) -> None:
    controller, server = start_smtp("starttls", certificate, starttls=False)
    try:
        with pytest.raises(DeliveryError, match="does not offer STARTTLS") as info:
            send_email(NotifySettings(**server.settings()), "ana@example.com", "s", "t",
                       message_id="<x@learncast>", env=CREDENTIALS)
    finally:
        controller.stop()
    assert not info.value.permanent and server.mailbox.messages == []


def test_an_untrusted_certificate_is_refused(certificate: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    from tests.notify.servers import make_certificate

    other, _ = make_certificate(tmp_path / "other")
    controller, server = start_smtp("ssl", certificate)
    try:
        with pytest.raises(DeliveryError, match=r"TLS with SMTP server .* failed"):
            send_email(NotifySettings(**server.settings(smtp_ca_file=str(other))),
                       "ana@example.com", "s", "t", message_id="<x@learncast>", env={})
    finally:
        controller.stop()
    assert server.mailbox.messages == []


def test_wrong_password_and_refused_recipient_say_what_to_check_and_never_leak(
        certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    controller, server = start_smtp("starttls", certificate, login=True)
    server.mailbox.refuse.add("gone@example.com")
    settings = NotifySettings(**server.settings())
    try:
        wrong = {**CREDENTIALS, "LEARNCAST_NOTIFY__SMTP_PASSWORD": "wrong-" + SMTP_PASSWORD}
        with pytest.raises(DeliveryError) as login_error:
            send_email(settings, "ana@example.com", "s", "t", message_id="<x@l>", env=wrong)
        with pytest.raises(DeliveryError) as refused:
            send_email(settings, "gone@example.com", "s", "t", message_id="<y@l>",
                       env=CREDENTIALS)
    finally:
        controller.stop()
    assert "refused the login" in str(login_error.value)
    assert "LEARNCAST_NOTIFY__SMTP_PASSWORD" in str(login_error.value)
    assert not login_error.value.permanent
    assert refused.value.permanent and "gone@example.com" in str(refused.value)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pipeline"))
    for text in (str(login_error.value), str(refused.value), ours):
        assert SMTP_PASSWORD not in text and SMTP_USER not in text


def test_no_password_goes_out_unencrypted_to_another_machine() -> None:
    settings = NotifySettings(smtp_host="192.0.2.10", smtp_security="none",
                              smtp_from="learncast@example.com")
    with pytest.raises(DeliveryError, match="without encryption") as info:
        send_email(settings, "ana@example.com", "s", "t", message_id="<x@l>",
                   env=CREDENTIALS)
    assert info.value.permanent


def test_unreachable_smtp_server_is_a_transient_failure() -> None:
    settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=free_port(),
                              smtp_security="none", smtp_from="learncast@example.com",
                              timeout_s=2)
    with pytest.raises(DeliveryError, match="unreachable") as info:
        send_email(settings, "ana@example.com", "s", "t", message_id="<x@l>", env={})
    assert not info.value.permanent


def test_a_silent_smtp_server_times_out_as_a_transient_failure() -> None:
    """A server that accepts the connection and never greets (overloaded, or a firewall that
    swallows the session) costs one timeout, not a hung courier."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=silent.getsockname()[1],
                                  smtp_security="starttls", smtp_from="learncast@example.com",
                                  timeout_s=1)
        with pytest.raises(DeliveryError, match="timed out") as info:
            send_email(settings, "ana@example.com", "s", "t", message_id="<x@l>",
                       env=CREDENTIALS)
        held, _ = silent.accept()  # the connection was made: it was the greeting that never came
        held.close()
    assert not info.value.permanent
    assert SMTP_PASSWORD not in str(info.value)


def test_webhook_is_signed_and_the_signature_verifies(receiver: Receiver) -> None:
    body = {"event": "failed", "text": "'Intro' failed at trim"}
    post_webhook(receiver.url, body, event="failed", delivery="d1", timeout_s=5,
                 env={"LEARNCAST_NOTIFY__WEBHOOK_SECRET": WEBHOOK_SECRET})
    [got] = receiver.deliveries
    assert json.loads(got.body) == body
    assert got.headers["X-Learncast-Event"] == "failed"
    assert got.headers["X-Learncast-Delivery"] == "d1"
    stamp, signature = got.headers[TIMESTAMP_HEADER], got.headers[SIGNATURE_HEADER]
    assert verify(WEBHOOK_SECRET, stamp, got.body, signature)
    assert not verify("another-secret", stamp, got.body, signature)
    assert not verify(WEBHOOK_SECRET, stamp, got.body.replace(b"trim", b"encode"), signature)
    assert not verify(WEBHOOK_SECRET, str(int(stamp) - 3600), got.body,
                      sign(WEBHOOK_SECRET, str(int(stamp) - 3600), got.body))  # replayed
    assert WEBHOOK_SECRET.encode() not in got.body


def test_webhook_failures_are_sorted_into_retry_or_give_up(receiver: Receiver) -> None:
    env = {"LEARNCAST_NOTIFY__WEBHOOK_SECRET": WEBHOOK_SECRET}
    receiver.answers = [503, 404]
    with pytest.raises(DeliveryError, match="503") as busy:
        post_webhook(receiver.url, {}, event="x", delivery="d", timeout_s=5, env=env)
    with pytest.raises(DeliveryError, match="404") as missing:
        post_webhook(receiver.url, {}, event="x", delivery="d", timeout_s=5, env=env)
    assert not busy.value.permanent and missing.value.permanent
    receiver.delay_s = 2.0
    with pytest.raises(DeliveryError, match="timed out") as slow:
        post_webhook(receiver.url, {}, event="x", delivery="d", timeout_s=0.3, env=env)
    assert not slow.value.permanent
    with pytest.raises(DeliveryError, match="WEBHOOK_SECRET is not set"):
        post_webhook(receiver.url, {}, event="x", delivery="d", timeout_s=5, env={})
    with pytest.raises(DeliveryError, match="unreachable") as down:
        post_webhook(f"http://127.0.0.1:{free_port()}/x?key=k", {}, event="x",
                     delivery="d", timeout_s=2, env=env)
    assert not down.value.permanent and "key=k" not in str(down.value)
