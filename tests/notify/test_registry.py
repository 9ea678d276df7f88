"""Only configured channels are built."""

from __future__ import annotations

from config.settings import Settings
from oncall.notify.channels.email import EmailChannel
from oncall.notify.channels.registry import build_channels
from oncall.notify.channels.sms import JsonHttpGateway, SmsChannel
from oncall.notify.channels.webhook import WebhookChannel


def test_webhooks_only_by_default() -> None:
    channels = build_channels(Settings(secret_key="k"))
    assert set(channels) == {"webhook"}
    webhook = channels["webhook"]
    assert isinstance(webhook, WebhookChannel)
    assert webhook.secret_key == "k"


def test_email_when_an_smtp_host_is_set() -> None:
    channels = build_channels(Settings(secret_key="k", smtp_host="mail.example.org"))
    assert set(channels) == {"webhook", "email"}
    assert isinstance(channels["email"], EmailChannel)


def test_sms_when_a_gateway_is_set() -> None:
    settings = Settings(
        secret_key="k",
        sms_gateway_url="https://sms.example.org/send",
        sms_gateway_token="t",
        sms_sender="GARDE",
        delivery_timeout_seconds=3.0,
    )
    channels = build_channels(settings)
    assert set(channels) == {"webhook", "sms"}
    sms = channels["sms"]
    assert isinstance(sms, SmsChannel)
    assert isinstance(sms.gateway, JsonHttpGateway)
    assert (sms.gateway.url, sms.gateway.token, sms.gateway.sender) == (
        "https://sms.example.org/send",
        "t",
        "GARDE",
    )
    assert sms.gateway.poster.timeout == 3.0


def test_all_three() -> None:
    settings = Settings(smtp_host="mail.example.org", sms_gateway_url="https://sms.example.org")
    assert set(build_channels(settings)) == {"webhook", "email", "sms"}
