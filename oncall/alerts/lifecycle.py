"""An alert's life after it opens: acknowledge, escalate to the police now, resolve.

Each function works on an alert row the caller has locked, inside the caller's
transaction (the caller commits). They write the timeline and the stream, and
move ``next_step_at``; none of them sends anything itself except through the
outbox, so a rollback leaves no trace anywhere.

- Acknowledge: the first coordinator takes charge; steps that stop on
  acknowledgement (the coordinator's repeats) stop, and their messages still
  waiting to be retried are cancelled. Acknowledging again answers who did.
- Escalate: the police steps fire now (on the same commit, by the engine).
- Resolve: every step stops, waiting messages are cancelled, and the police
  contacts already told receive a stand-down message.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from oncall.alerts import engine
from oncall.alerts.models import ACTIVE_ALERT_STATES, Alert, EscalationClaim
from oncall.alerts.recipients import Directory
from oncall.core.timeline import record
from oncall.extensions import db
from oncall.notify import outbox
from oncall.notify.stream import publish


def lock_alert(circle_id: int, alert_id: int) -> Alert | None:
    """The alert of the circle, locked for update (None when it is not this circle's)."""
    stmt = (
        select(Alert)
        .where(Alert.circle_id == circle_id, Alert.id == alert_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return db.session.scalars(stmt).first()


def acknowledge(alert: Alert, user_id: int, now: datetime) -> bool:
    """Take charge of ``alert``; False (nothing changed) when someone already did."""
    if alert.status != "open":
        return False
    alert.status = "acknowledged"
    alert.acknowledged_at = now
    alert.acknowledged_by_id = user_id
    alert.updated_at = now
    cancelled = outbox.cancel_for_alert(alert.id, ("acknowledge",), now)
    record(alert.circle_id, "alert", alert.id, "alert.acknowledged", now, user_id,
           cancelled_messages=cancelled)
    engine.fire_due_steps(alert, now, Directory())
    publish(alert.circle_id, "alert.acknowledged", "alert", alert.id, now, by=user_id)
    return True


def escalate(alert: Alert, user_id: int, now: datetime) -> int:
    """Fire the police steps now; returns how many steps fired (0: already told)."""
    if alert.status not in ACTIVE_ALERT_STATES:
        return 0
    if alert.escalated_at is None:
        alert.escalated_at = now
        alert.escalated_by_id = user_id
    alert.updated_at = now
    record(alert.circle_id, "alert", alert.id, "alert.escalated", now, user_id)
    fired = engine.fire_due_steps(alert, now, Directory())
    publish(alert.circle_id, "alert.escalated", "alert", alert.id, now, by=user_id)
    return fired


def resolve(
    alert: Alert, user_id: int | None, note: str, now: datetime, *, automatic: bool = False
) -> bool:
    """Close ``alert`` with a note; False when it was already resolved."""
    if alert.status == "resolved":
        return False
    was = alert.status
    alert.status = "resolved"
    alert.resolved_at = now
    alert.resolved_by_id = user_id
    alert.resolution_note = note
    alert.next_step_at = None
    alert.updated_at = now
    cancelled = outbox.cancel_for_alert(alert.id, ("acknowledge", "resolve"), now)
    record(alert.circle_id, "alert", alert.id, "alert.resolved", now, user_id,
           note=note, automatic=automatic, was=was, cancelled_messages=cancelled)
    if alert.visit_id is not None:
        record(alert.circle_id, "visit", alert.visit_id, "alert.resolved", now, user_id,
               alert_id=alert.id, automatic=automatic)
    _stand_down(alert, note, now)
    publish(alert.circle_id, "alert.resolved", "alert", alert.id, now,
            by=user_id, automatic=automatic)
    return True


def _stand_down(alert: Alert, note: str, now: datetime) -> None:
    """Tell the police contacts already notified that the alert is over."""
    told = db.session.scalar(
        select(EscalationClaim.id)
        .where(EscalationClaim.alert_id == alert.id, EscalationClaim.target == "police",
               EscalationClaim.messages > 0)
        .limit(1)
    )
    if told is None:
        return
    from oncall.alerts import messages

    for person in Directory().police(alert.circle_id, alert.zone_id):
        text = messages.text("resolved", person.language, id=alert.id, note=note)
        for address in person.addresses:
            outbox.add(
                circle_id=alert.circle_id, purpose="alert.resolved", alert_id=alert.id,
                recipient_type=person.type, recipient_id=person.id,
                channel=address.channel, address=address.address,
                channel_id=address.channel_id, subject=text[:200], body=text,
                payload={"type": "alert.resolved",
                         "alert": {"id": alert.id, "kind": alert.kind, "status": "resolved",
                                   "resolved_at": now.isoformat(), "note": note}},
                now=now,
            )
