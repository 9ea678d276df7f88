"""The webhook channel against a real local receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from oncall.notify.channels.webhook import WebhookChannel
from oncall.notify.signing import (
    ATTEMPT_HEADER,
    MESSAGE_ID_HEADER,
    sign,
    webhook_secret,
)
from tests.notify.helpers import SECRET_KEY, failure, outgoing
from tests.peers import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(webhook_secret(SECRET_KEY, 7)) as peer:
        yield peer


@pytest.fixture
def channel() -> Iterator[WebhookChannel]:
    sender = WebhookChannel(SECRET_KEY, timeout=2.0)
    yield sender
    sender.close()


def test_delivers_a_signed_payload_with_its_idempotency_key(
    receiver: WebhookReceiver, channel: WebhookChannel
) -> None:
    receipt = channel.send(outgoing(receiver.url, attempt=3))

    assert receipt == "HTTP 200 id rcv-1"
    [delivery] = receiver.deliveries
    assert delivery.signature_ok is True
    assert delivery.key == "42"
    assert delivery.headers[MESSAGE_ID_HEADER] == "42"
    assert delivery.headers[ATTEMPT_HEADER] == "3"
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.body == {
        "event": "alert.raised",
        "alert": {"id": 5, "level": 1},
        "message_id": 42,
    }
    assert delivery.raw == b'{"alert":{"id":5,"level":1},"event":"alert.raised","message_id":42}'


def test_the_signature_is_the_circles_own(channel: WebhookChannel) -> None:
    """A receiver holding circle 8's secret refuses circle 7's webhook."""
    with WebhookReceiver(webhook_secret(SECRET_KEY, 8)) as other:
        problem = failure(lambda: channel.send(outgoing(other.url, circle_id=7)))
    assert problem.permanent
    assert problem.detail == "HTTP 401"
    assert [d.signature_ok for d in other.deliveries] == [False]


def test_the_signature_covers_timestamp_and_body(
    receiver: WebhookReceiver, channel: WebhookChannel
) -> None:
    channel.send(outgoing(receiver.url))
    [delivery] = receiver.deliveries
    timestamp = delivery.headers["X-Oncall-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 5
    expected = sign(webhook_secret(SECRET_KEY, 7), timestamp, delivery.raw)
    assert delivery.headers["X-Oncall-Signature"] == expected


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (500, False),
        (503, False),
        (429, False),
        (408, False),
        (400, True),
        (404, True),
        (410, True),
        (302, True),
    ],
)
def test_classifies_answers(
    receiver: WebhookReceiver, channel: WebhookChannel, status: int, permanent: bool
) -> None:
    receiver.status = status

    problem = failure(lambda: channel.send(outgoing(receiver.url)))

    assert problem.permanent is permanent
    assert problem.detail.startswith(f"HTTP {status}")
    assert len(receiver.deliveries) == 1, "the channel itself never retries"


def test_connection_refused_is_retryable(channel: WebhookChannel) -> None:
    receiver = WebhookReceiver().start()
    url = receiver.url
    receiver.stop()

    problem = failure(lambda: channel.send(outgoing(url)))

    assert not problem.permanent
    assert "refused" in problem.detail


def test_timeout_is_retryable(receiver: WebhookReceiver) -> None:
    receiver.delay = 2.0
    impatient = WebhookChannel(SECRET_KEY, timeout=0.2)
    started = time.monotonic()

    problem = failure(lambda: impatient.send(outgoing(receiver.url)))

    assert time.monotonic() - started < 1.5
    assert not problem.permanent
    assert "timeout" in problem.detail
    impatient.close()


def test_a_receiver_that_goes_down_and_comes_back(
    receiver: WebhookReceiver, channel: WebhookChannel
) -> None:
    """A pooled keep-alive connection does not hide an outage, nor survive it."""
    channel.send(outgoing(receiver.url, message_id=1))
    receiver.stop()

    problem = failure(lambda: channel.send(outgoing(receiver.url, message_id=2)))
    assert not problem.permanent

    receiver.start()
    assert channel.send(outgoing(receiver.url, message_id=2)).startswith("HTTP 200")
    assert receiver.unique_keys() == {"1", "2"}


def test_keeps_the_connection_alive_between_messages(
    receiver: WebhookReceiver, channel: WebhookChannel
) -> None:
    for message_id in range(1, 6):
        channel.send(outgoing(receiver.url, message_id=message_id))
    assert len({d.client_port for d in receiver.deliveries}) == 1


def test_sends_from_many_threads(receiver: WebhookReceiver, channel: WebhookChannel) -> None:
    messages = [outgoing(receiver.url, message_id=n) for n in range(1, 41)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        receipts = list(pool.map(channel.send, messages))

    assert all(r.startswith("HTTP 200") for r in receipts)
    assert receiver.unique_keys() == {str(n) for n in range(1, 41)}
    assert receiver.duplicates() == {}
    assert 1 <= len(channel.poster._sessions) <= 4


@pytest.mark.parametrize(
    "address", ["ftp://example.org/hook", "file:///etc/passwd", "not a url", "http://"]
)
def test_refuses_addresses_that_are_not_http(channel: WebhookChannel, address: str) -> None:
    problem = failure(lambda: channel.send(outgoing(address)))
    assert problem.permanent


def test_a_payload_that_is_not_json_is_permanent(
    receiver: WebhookReceiver, channel: WebhookChannel
) -> None:
    problem = failure(lambda: channel.send(outgoing(receiver.url, payload={"at": object()})))
    assert problem.permanent
    assert receiver.deliveries == []


def test_a_receipt_keeps_only_a_short_printable_id(channel: WebhookChannel) -> None:
    class LongIds(WebhookReceiver):
        def handle(self, *args: object, **kwargs: object) -> tuple[int, object]:
            super().handle(*args, **kwargs)  # type: ignore[arg-type]
            return 201, {"id": "x" * 500 + "\n"}

    with LongIds() as peer:
        receipt = channel.send(outgoing(peer.url))
    assert receipt == "HTTP 201 id " + "x" * 64
