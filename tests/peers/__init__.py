"""Real local peers for the notification channels: a webhook receiver, an SMS gateway
and an SMTP server, each on 127.0.0.1 and a free port.

They are the other end of real network exchanges, so tests and benchmarks see
what a receiver sees: every POST or email, its idempotency key, when it arrived,
duplicates. Each peer can be stopped and started again on the same port (a
receiver that is down refuses connections) and told to answer with a failure
(``status`` / ``fail_code`` for every request, ``fail_next(n, code)`` for a few).

In a test::

    with WebhookReceiver(secret) as receiver:
        channel.send(message)
        assert receiver.wait_for(1)

As a separate process (benchmarks), one JSON line per delivery::

    python -m tests.peers webhook --port 8099 --log deliveries.jsonl \
        [--secret S | --secret-key KEY --circle 1 --circle 2]

Each line holds ``key`` (the idempotency key), ``received_at`` (unix seconds),
``status`` (what was answered), ``attempt`` and, when the payload has them,
``event``, ``alert_id``, ``level`` and ``due_at``.

It prints ``{"ready": true, "url": ..., "port": ...}`` on stdout once listening
and stops cleanly on SIGTERM or SIGINT. ``sms`` and ``smtp`` run the other peers
the same way.
"""

from __future__ import annotations

from tests.peers.base import HOST, HttpPeer, Recorder, free_port
from tests.peers.sms import SmsGatewayPeer, SmsRecord
from tests.peers.smtp import SmtpPeer, SmtpRecord
from tests.peers.webhook import Delivery, WebhookReceiver, webhook_log_line

__all__ = [
    "HOST",
    "Delivery",
    "HttpPeer",
    "Recorder",
    "SmsGatewayPeer",
    "SmsRecord",
    "SmtpPeer",
    "SmtpRecord",
    "WebhookReceiver",
    "free_port",
    "webhook_log_line",
]
