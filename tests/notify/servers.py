"""Real servers for the notification tests: SMTP (aiosmtpd, plain, STARTTLS or SMTPS, with
or without a login) and an HTTP receiver for webhooks that can answer slowly or with errors.
A certificate for 127.0.0.1 is made at test time; the client trusts it through
`notify.smtp_ca_file`, as it would trust a company CA.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.storage.s3fixtures import free_port

SMTP_USER = "learncast-mailer"
SMTP_PASSWORD = "smtp-pass-5b1e9c-never-log-me"
WEBHOOK_SECRET = "webhook-secret-3d7a21-do-not-leak"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost: (cert.pem, key.pem)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "learncast test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@dataclass
class Mailbox:
    """What the SMTP server accepted; recipients in `refuse` get 550."""

    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@dataclass
class SmtpServer:
    host: str
    port: int
    security: str
    mailbox: Mailbox
    ca_file: Path

    def settings(self, **more: Any) -> dict[str, Any]:
        """`[notify]` settings that point at this server."""
        return {"smtp_host": self.host, "smtp_port": self.port, "smtp_security": self.security,
                "smtp_from": "learncast@example.com", "smtp_ca_file": str(self.ca_file),
                "timeout_s": 5.0, **more}


def start_smtp(security: str, certificate: tuple[Path, Path], *, login: bool = False,
               starttls: bool = True) -> tuple[Controller, SmtpServer]:
    """An SMTP server on 127.0.0.1: `none` (plain), `starttls` (offers STARTTLS unless
    `starttls=False`), `ssl` (TLS from the first byte); `login`: requires SMTP_USER."""
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    mailbox = Mailbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and data.login.decode() == SMTP_USER
              and data.password.decode() == SMTP_PASSWORD)
        if ok:
            mailbox.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)  # a failure is answered 535

    kwargs: dict[str, Any] = {}
    if security == "starttls" and starttls:
        kwargs.update(tls_context=tls, require_starttls=True)
    if security == "ssl":
        kwargs.update(ssl_context=tls)
    if login:
        kwargs.update(authenticator=authenticate, auth_required=True,
                      auth_require_tls=security == "starttls")  # SMTPS: TLS already
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                            server_hostname="localhost", **kwargs)
    controller.start()
    return controller, SmtpServer("127.0.0.1", port, security, mailbox, cert)


@pytest.fixture
def smtp(certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """A STARTTLS server that requires a login, as most company relays do."""
    controller, server = start_smtp("starttls", certificate, login=True)
    yield server
    controller.stop()


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP endpoint that records POSTs. `answers`: statuses to give in turn (then 200);
    `delay_s`: wait this long before answering (a slow endpoint)."""

    def __init__(self, port: int = 0) -> None:
        self.deliveries: list[Delivery] = []
        self.arrived = 0  # requests that reached it, answered or not
        self.answers: list[int] = []
        self.delay_s = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.arrived += 1
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver.lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    if status == 200:
                        receiver.deliveries.append(Delivery(self.path, dict(self.headers),
                                                            body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/learncast"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.deliveries) >= count:
                    return list(self.deliveries)
            time.sleep(0.05)
        raise AssertionError(f"only {len(self.deliveries)} of {count} webhook deliveries came")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def wait_until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("the condition was not met in time")


def configure(workspace: Path, show: dict[str, Any] | None = None,
              **sections: dict[str, Any]) -> None:
    """Rewrite the workspace's config with changes to sections (`notify={...}`) and to its
    first show (`show={...}`), through the schema, as `learncast init` writes it."""
    from pipeline.config import (
        CONFIG_RELPATH,
        Settings,
        _deep_merge,
        load_settings,
        render_config,
    )

    current = load_settings(workspace, env={}).model_dump()
    merged = _deep_merge(current, sections)
    if show:
        merged["shows"] = [{**merged["shows"][0], **show}, *merged["shows"][1:]]
    (workspace / CONFIG_RELPATH).write_text(render_config(Settings.model_validate(merged)))
