"""What every channel receives and how it reports the outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Outgoing:
    """One outbox row, as a channel needs it (no database object).

    ``message_id`` is the outbox row's id: the idempotency key the receiver sees
    (``Idempotency-Key`` header of a webhook, ``Message-ID`` of an email,
    ``reference`` of an SMS).
    """

    message_id: int
    circle_id: int
    channel: str
    address: str
    subject: str
    body: str
    payload: dict[str, Any] = field(default_factory=dict)
    #: The attempt this is (1 for the first).
    attempt: int = 1


class DeliveryFailed(Exception):
    """The receiver did not take the message.

    ``permanent`` means retrying cannot help (a malformed address, a 4xx other
    than 408/429); the relay then stops trying. ``detail`` is short and never
    holds the message's content.
    """

    def __init__(self, detail: str, *, permanent: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail[:300]
        self.permanent = permanent


class Channel(Protocol):
    """Sends one message; returns a short receipt (at most 300 characters)."""

    def send(self, message: Outgoing) -> str: ...
