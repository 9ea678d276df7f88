"""Every delivery attempt of an alert's message goes on the alert's timeline.

The relay (:mod:`oncall.notify.outbox`) knows messages, not alerts; it tells its
listeners of each attempt inside its own transaction, and this listener writes
the alert's timeline event (and, when the message was delivered or given up, a
stream event for the consoles). Addresses and contents are never copied here:
the recipient, the channel and the outcome are enough to answer "who was told
what, and when".
"""

from __future__ import annotations

from oncall.core.timeline import record
from oncall.notify import outbox
from oncall.notify.models import DeliveryAttempt, OutboxMessage
from oncall.notify.stream import publish


def on_attempt(row: OutboxMessage, attempt: DeliveryAttempt) -> None:
    """Record one attempt at delivering ``row`` on its alert's timeline."""
    if row.alert_id is None:
        return
    outcome = "delivered" if attempt.ok else ("failed" if row.state == "failed" else "retrying")
    record(
        row.circle_id, "alert", row.alert_id, f"delivery.{outcome}", attempt.finished_at,
        outbox_id=row.id, purpose=row.purpose, channel=row.channel,
        recipient_type=row.recipient_type, recipient_id=row.recipient_id,
        attempt=attempt.attempt, detail=attempt.detail,
        next_attempt_at=row.next_attempt_at,
    )
    if outcome != "retrying":
        publish(row.circle_id, f"alert.delivery_{outcome}", "alert", row.alert_id,
                attempt.finished_at, outbox_id=row.id, channel=row.channel,
                recipient_type=row.recipient_type, recipient_id=row.recipient_id)


def register() -> None:
    """Listen to the relay's attempts (once per process)."""
    if on_attempt not in outbox.ATTEMPT_LISTENERS:
        outbox.ATTEMPT_LISTENERS.append(on_attempt)
