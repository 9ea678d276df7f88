"""Which channels this installation can deliver on, built once from the settings."""

from __future__ import annotations

from config.settings import Settings
from oncall.notify.channels.base import Channel
from oncall.notify.channels.email import EmailChannel
from oncall.notify.channels.sms import JsonHttpGateway, SmsChannel
from oncall.notify.channels.webhook import WebhookChannel


def build_channels(settings: Settings) -> dict[str, Channel]:
    """The configured channels by name.

    Webhooks need nothing but the secret key, so they are always there; email
    needs ``smtp_host`` and SMS needs ``sms_gateway_url``. A message for a channel
    missing here is left to the relay to report as not configured.
    """
    timeout = settings.delivery_timeout_seconds
    channels: dict[str, Channel] = {"webhook": WebhookChannel(settings.secret_key, timeout)}
    if settings.smtp_host:
        channels["email"] = EmailChannel(settings)
    if settings.sms_gateway_url:
        gateway = JsonHttpGateway(
            settings.sms_gateway_url, settings.sms_gateway_token, settings.sms_sender, timeout
        )
        channels["sms"] = SmsChannel(gateway)
    return channels
