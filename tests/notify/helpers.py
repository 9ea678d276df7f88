"""Helpers of the channel tests: an outgoing message and an expected failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from oncall.notify.channels.base import DeliveryFailed, Outgoing

SECRET_KEY = "service-secret-key-for-channel-tests-0123456789"


def outgoing(address: str, **changes: Any) -> Outgoing:
    """A message as the relay hands it to a channel."""
    values: dict[str, Any] = {
        "message_id": 42,
        "circle_id": 7,
        "channel": "webhook",
        "address": address,
        "subject": "Visit overdue: Rue Haute 12",
        "body": "Dr. Dupont has not confirmed arrival at Rue Haute 12.",
        "payload": {"event": "alert.raised", "alert": {"id": 5, "level": 1}},
        "attempt": 1,
    }
    values.update(changes)
    return Outgoing(**values)


def failure(send: Callable[[], object]) -> DeliveryFailed:
    """The :class:`DeliveryFailed` that ``send`` raises."""
    with pytest.raises(DeliveryFailed) as caught:
        send()
    return caught.value
