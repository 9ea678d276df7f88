"""The email channel against a real local SMTP server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from config.settings import Settings
from oncall.notify.channels.email import EmailChannel
from tests.notify.helpers import failure, outgoing
from tests.peers import HOST, SmtpPeer

SENDER = "Oncall Garde <oncall@garde.example.org>"


@pytest.fixture
def smtp() -> Iterator[SmtpPeer]:
    with SmtpPeer() as peer:
        yield peer


def email_channel(port: int, **changes: object) -> EmailChannel:
    values: dict[str, object] = {
        "smtp_host": HOST,
        "smtp_port": port,
        "smtp_from": SENDER,
        "delivery_timeout_seconds": 2.0,
    }
    values.update(changes)
    return EmailChannel(Settings(**values))  # type: ignore[arg-type]


def test_delivers_plain_text_with_a_stable_message_id(smtp: SmtpPeer) -> None:
    body = "Dr. Dupont n'a pas confirmé son arrivée à la Rue Haute 12."
    receipt = email_channel(smtp.port).send(
        outgoing("dispatch@garde.example.org", channel="email", body=body)
    )

    [mail] = smtp.messages
    assert receipt == f"250 2.0.0 Ok: queued as {mail.queue_id}"
    assert mail.rcpt_tos == ["dispatch@garde.example.org"]
    assert mail.mail_from == "oncall@garde.example.org"
    assert mail.message_id == "<oncall-42@garde.example.org>"
    assert mail.message["X-Oncall-Message-Id"] == "42"
    assert mail.message["From"] == SENDER
    assert mail.message["To"] == "dispatch@garde.example.org"
    assert mail.message["Subject"] == "Visit overdue: Rue Haute 12"
    assert mail.message.get_content_type() == "text/plain"
    assert mail.text.strip() == body
    assert b"\n" not in mail.raw.replace(b"\r\n", b""), "lines must end in CRLF"


def test_a_resent_message_keeps_its_message_id(smtp: SmtpPeer) -> None:
    channel = email_channel(smtp.port)
    channel.send(outgoing("a@example.org", attempt=1))
    channel.send(outgoing("a@example.org", attempt=2))
    assert smtp.duplicates() == {"<oncall-42@garde.example.org>": 2}


@pytest.mark.parametrize(
    ("code", "stage", "permanent"),
    [(451, "rcpt", False), (550, "rcpt", True), (451, "data", False), (554, "data", True)],
)
def test_classifies_refusals(smtp: SmtpPeer, code: int, stage: str, permanent: bool) -> None:
    smtp.fail_stage = stage
    smtp.fail_code = code

    problem = failure(lambda: email_channel(smtp.port).send(outgoing("a@example.org")))

    assert problem.permanent is permanent
    assert str(code) in problem.detail
    assert smtp.messages == []


def test_a_temporary_refusal_then_success(smtp: SmtpPeer) -> None:
    smtp.fail_next(1, 451)
    channel = email_channel(smtp.port)
    assert not failure(lambda: channel.send(outgoing("a@example.org"))).permanent
    assert channel.send(outgoing("a@example.org")).startswith("250")
    assert len(smtp.messages) == 1


def test_an_unreachable_server_is_retryable(smtp: SmtpPeer) -> None:
    smtp.stop()
    problem = failure(lambda: email_channel(smtp.port).send(outgoing("a@example.org")))
    assert not problem.permanent
    smtp.start()
    assert email_channel(smtp.port).send(outgoing("a@example.org")).startswith("250")


def test_a_silent_server_times_out_and_is_retryable() -> None:
    """A server that accepts the connection but never greets."""
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(1)
        channel = email_channel(silent.getsockname()[1], delivery_timeout_seconds=0.3)
        started = time.monotonic()
        problem = failure(lambda: channel.send(outgoing("a@example.org")))
    assert time.monotonic() - started < 2
    assert not problem.permanent
    assert "timed out" in problem.detail


def test_a_configured_login_is_never_skipped(smtp: SmtpPeer) -> None:
    """The peer offers no AUTH: the channel must not send without logging in."""
    channel = email_channel(smtp.port, smtp_username="relay", smtp_password="pw")
    problem = failure(lambda: channel.send(outgoing("a@example.org")))
    assert not problem.permanent
    assert smtp.messages == []


def test_a_configured_starttls_is_never_skipped(smtp: SmtpPeer) -> None:
    """The peer offers no STARTTLS: the channel must not fall back to plain text."""
    channel = email_channel(smtp.port, smtp_starttls=True)
    problem = failure(lambda: channel.send(outgoing("a@example.org")))
    assert not problem.permanent
    assert smtp.messages == []


@pytest.mark.parametrize(
    "address", ["", "not-an-address", "a@example.org\r\nBcc: b@example.org", "é@exämple.org"]
)
def test_a_malformed_address_is_permanent(smtp: SmtpPeer, address: str) -> None:
    problem = failure(lambda: email_channel(smtp.port).send(outgoing(address)))
    assert problem.permanent
    assert smtp.messages == []
