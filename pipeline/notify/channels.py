"""The two ways a notification leaves: an e-mail over SMTP and a signed webhook POST.

Both only send; whether to try again is decided by the caller from `DeliveryError.permanent`
(a refused recipient or a 4xx answer will be refused again; a timeout, a connection refused
or a 5xx may pass later). Credentials and the webhook secret come from the environment at the
moment of sending and appear in no message, log line or exception text of ours.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import ipaddress
import json
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from pipeline import __version__
from pipeline.config import ENV_ONLY_SECRETS, NotifySettings

SIGNATURE_HEADER = "X-Learncast-Signature"
TIMESTAMP_HEADER = "X-Learncast-Timestamp"
DELIVERY_HEADER = "X-Learncast-Delivery"
EVENT_HEADER = "X-Learncast-Event"


class DeliveryError(Exception):
    """A notification could not be delivered; `permanent`: trying again will not help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of `<timestamp>.<body>` (the timestamp is signed too, so
    a captured request cannot be replayed later with a new one)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *,
           max_age_s: float = 300.0, now: float | None = None) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def post_webhook(url: str, body: dict[str, Any], *, event: str, delivery: str,
                 timeout_s: float, env: Mapping[str, str]) -> None:
    """POST `body` as JSON, signed with LEARNCAST_NOTIFY__WEBHOOK_SECRET."""
    secret = env.get(ENV_ONLY_SECRETS["webhook_secret"], "")
    where = _where(url)
    if not secret:
        raise DeliveryError(f"webhook {where} not sent: {ENV_ONLY_SECRETS['webhook_secret']} "
                            "is not set, and webhooks are always signed; set it (the "
                            "receiver checks the signature with the same secret) and keep "
                            "`learncast watch` running, or run `learncast run`")
    data = json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")
    stamp = str(int(time.time()))
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": f"learncast/{__version__}",
        EVENT_HEADER: event, DELIVERY_HEADER: delivery, TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(secret, stamp, data)})
    try:
        with _no_redirects().open(request, timeout=timeout_s) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 409, 425, 429)
        raise DeliveryError(f"webhook {where} answered {exc.code} {exc.reason}"
                            + ("; check the URL in the show's `webhooks`" if permanent
                               else "; tried again later"), permanent=permanent) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"webhook {where} unreachable ({_plain(reason)}); tried again "
                            "later") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer, not a place to send the payload again


def _no_redirects() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirect())


def _where(url: str) -> str:
    """The URL as it may be logged: scheme, host and path, no query (it may hold a key)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


def _plain(reason: Any) -> str:
    if isinstance(reason, socket.timeout | TimeoutError):
        return "timed out"
    return str(reason) or type(reason).__name__


def _loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def send_email(settings: NotifySettings, to: str, subject: str, text: str, *,
               message_id: str, env: Mapping[str, str]) -> None:
    """Send one plain-text e-mail through the configured SMTP server."""
    user = env.get(ENV_ONLY_SECRETS["smtp_user"], "")
    password = env.get(ENV_ONLY_SECRETS["smtp_password"], "")
    host, port, security = settings.smtp_host, settings.port, settings.smtp_security
    where = f"SMTP server {host}:{port}"
    if user and security == "none" and not _loopback(host):
        raise DeliveryError(f"not sending the SMTP password to {where} without encryption; "
                            "set notify.smtp_security to starttls or ssl", permanent=True)
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = message_id  # the same for a retry: clients show one message
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    msg.set_content(text)
    try:
        context = ssl.create_default_context(cafile=settings.smtp_ca_file or None)
    except OSError as exc:
        raise DeliveryError(f"notify.smtp_ca_file {settings.smtp_ca_file!r} cannot be read "
                            f"({exc.strerror or exc}); give a PEM file") from None
    try:
        client: smtplib.SMTP
        if security == "ssl":
            client = smtplib.SMTP_SSL(host, port, timeout=settings.timeout_s, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=settings.timeout_s)
        with client:
            client.ehlo()
            if security == "starttls":
                if not client.has_extn("starttls"):
                    raise DeliveryError(f"{where} does not offer STARTTLS, so nothing was sent "
                                        "in the clear; set notify.smtp_security = \"ssl\" (port "
                                        "465) or use a server that offers it")
                client.starttls(context=context)
                client.ehlo()
            if user:
                client.login(user, password)
            client.send_message(msg)
    except DeliveryError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"{where} refused the login ({exc.smtp_code}); check "
                            f"{ENV_ONLY_SECRETS['smtp_user']} and "
                            f"{ENV_ONLY_SECRETS['smtp_password']}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        permanent = all(code >= 500 for code in codes)
        raise DeliveryError(f"{where} refused the recipient {to} ({', '.join(map(str, codes))})"
                            + ("; check the address in the show's producers/reviewers or the "
                               "sidecar" if permanent else ""), permanent=permanent) from None
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        permanent = exc.smtp_code >= 500
        raise DeliveryError(f"{where} refused the message ({exc.smtp_code} "
                            f"{_decoded(exc.smtp_error)})"
                            + ("; check notify.smtp_from" if permanent else ""),
                            permanent=permanent) from None
    except ssl.SSLError as exc:
        raise DeliveryError(f"TLS with {where} failed ({exc.reason or exc}); check "
                            "notify.smtp_security and notify.smtp_ca_file") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{where} unreachable or failed ({_plain(exc)}); tried again "
                            "later") from None


def _decoded(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
