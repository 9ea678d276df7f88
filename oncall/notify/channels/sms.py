"""SMS through an HTTP gateway, behind a small adapter so the gateway can change.

The channel knows nothing of any provider: it hands the text and a reference
(the outbox id, so a gateway that de-duplicates on it can drop a retried copy)
to an :class:`SmsGateway`. The built-in :class:`JsonHttpGateway` speaks a plain
JSON protocol::

    POST <ONCALL_SMS_GATEWAY_URL>
    Authorization: Bearer <ONCALL_SMS_GATEWAY_TOKEN>
    Content-Type: application/json

    {"to": "+3247...", "from": "<ONCALL_SMS_SENDER>", "text": "...", "reference": "42"}

and expects a 2xx answer such as ``{"id": "abc123"}``. Its failures are classified
like webhooks: 408, 429, 5xx, timeouts and connection errors are retried; other
4xx (a refused token, a malformed number) are permanent.

To plug another gateway, write a class with one method::

    class MyGateway:
        def send_sms(self, to: str, text: str, reference: str) -> str:
            ...  # call the provider; return a short receipt such as its message id
            # raise DeliveryFailed("...") to retry later,
            # or DeliveryFailed("...", permanent=True) when retrying cannot help

and build the channel with ``SmsChannel(MyGateway(...))`` in
:func:`oncall.notify.channels.registry.build_channels`.
"""

from __future__ import annotations

import json
from typing import Protocol

from oncall.notify.channels.base import DeliveryFailed, Outgoing
from oncall.notify.channels.webhook import JsonPoster, check_http_url

#: The longest text sent: four concatenated SMS parts at most.
MAX_SMS_CHARS = 640


class SmsGateway(Protocol):
    """Sends one SMS; returns a short receipt or raises :class:`DeliveryFailed`."""

    def send_sms(self, to: str, text: str, reference: str) -> str: ...


class JsonHttpGateway:
    """The built-in gateway adapter: one JSON POST with a bearer token per SMS."""

    def __init__(self, url: str, token: str, sender: str, timeout: float) -> None:
        self.url = url
        self.token = token
        self.sender = sender
        self.poster = JsonPoster(timeout)

    def send_sms(self, to: str, text: str, reference: str) -> str:
        """POST the SMS; the receipt is ``gateway id <id>`` (or the HTTP status without one)."""
        check_http_url(self.url)
        body = json.dumps(
            {"to": to, "from": self.sender, "text": text, "reference": reference},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        answer = self.poster.post(self.url, body, headers)
        found = answer.answer_id()
        return f"gateway id {found}" if found else answer.receipt()

    def close(self) -> None:
        """Drop pooled connections (tests and shutdown)."""
        self.poster.close()


class SmsChannel:
    """Delivers a message's body as an SMS to the address (a phone number)."""

    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    def send(self, message: Outgoing) -> str:
        """Send the body, cut to :data:`MAX_SMS_CHARS`, with the outbox id as reference."""
        to = message.address.strip()
        if not to:
            raise DeliveryFailed("no phone number", permanent=True)
        text = message.body[:MAX_SMS_CHARS]
        return self.gateway.send_sms(to, text, str(message.message_id))
