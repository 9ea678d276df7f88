"""The SMS channel and its JSON gateway adapter against a real local gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oncall.notify.channels.sms import MAX_SMS_CHARS, JsonHttpGateway, SmsChannel
from tests.notify.helpers import failure, outgoing
from tests.peers import SmsGatewayPeer

TOKEN = "gateway-token-123"


@pytest.fixture
def gateway() -> Iterator[SmsGatewayPeer]:
    with SmsGatewayPeer(TOKEN) as peer:
        yield peer


def sms_channel(peer: SmsGatewayPeer, token: str = TOKEN, timeout: float = 2.0) -> SmsChannel:
    return SmsChannel(JsonHttpGateway(peer.url, token, "ONCALL", timeout))


def test_delivers_with_bearer_token_and_reference(gateway: SmsGatewayPeer) -> None:
    receipt = sms_channel(gateway).send(outgoing("+32470123456", channel="sms"))

    assert receipt == "gateway id sms-1"
    [sms] = gateway.messages
    assert sms.authorization == f"Bearer {TOKEN}"
    assert sms.to == "+32470123456"
    assert sms.sender == "ONCALL"
    assert sms.text == "Dr. Dupont has not confirmed arrival at Rue Haute 12."
    assert sms.reference == "42"


def test_cuts_long_texts(gateway: SmsGatewayPeer) -> None:
    sms_channel(gateway).send(outgoing("+32470123456", channel="sms", body="é" * 1000))
    [sms] = gateway.messages
    assert sms.text == "é" * MAX_SMS_CHARS


def test_a_wrong_token_is_permanent(gateway: SmsGatewayPeer) -> None:
    problem = failure(lambda: sms_channel(gateway, token="wrong").send(outgoing("+3247")))
    assert problem.permanent
    assert problem.detail == "HTTP 401"
    assert gateway.messages == []


@pytest.mark.parametrize(("status", "permanent"), [(503, False), (429, False), (422, True)])
def test_classifies_gateway_answers(gateway: SmsGatewayPeer, status: int, permanent: bool) -> None:
    gateway.fail_next(1, status)
    channel = sms_channel(gateway)

    problem = failure(lambda: channel.send(outgoing("+32470123456")))
    assert problem.permanent is permanent

    assert channel.send(outgoing("+32470123456")) == "gateway id sms-1"


def test_an_unreachable_gateway_is_retryable(gateway: SmsGatewayPeer) -> None:
    channel = sms_channel(gateway)
    gateway.stop()
    problem = failure(lambda: channel.send(outgoing("+32470123456")))
    assert not problem.permanent


def test_a_slow_gateway_is_retryable(gateway: SmsGatewayPeer) -> None:
    gateway.delay = 2.0
    problem = failure(lambda: sms_channel(gateway, timeout=0.2).send(outgoing("+32470123456")))
    assert not problem.permanent
    assert "timeout" in problem.detail


def test_no_number_is_permanent(gateway: SmsGatewayPeer) -> None:
    problem = failure(lambda: sms_channel(gateway).send(outgoing("  ")))
    assert problem.permanent
    assert gateway.requests == []


def test_another_gateway_plugs_in() -> None:
    class Recording:
        def __init__(self) -> None:
            self.sent: list[tuple[str, str, str]] = []

        def send_sms(self, to: str, text: str, reference: str) -> str:
            self.sent.append((to, text, reference))
            return "provider ok"

    gateway = Recording()
    receipt = SmsChannel(gateway).send(outgoing(" +32470123456 ", body="Call back"))
    assert receipt == "provider ok"
    assert gateway.sent == [("+32470123456", "Call back", "42")]
