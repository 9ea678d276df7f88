"""The data and the checks the process tests share: a circle on short escalation times.

The circle's policy for a missed arrival is shortened to seconds
(:data:`SHORT_POLICY`): the doctor at once, the coordinator after 2 s and every
2 s until someone acknowledges, the police after 6 s unless the alert is
resolved. The doctor, the coordinator and the police contact are webhooks of one
receiver, on the paths ``/hook/doctor``, ``/hook/coordinator`` and ``/hook/police``.

Everything here runs in the test process, on the session's test database, and
commits: the worker and scheduler processes only see committed rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from oncall.alerts import deadlines, lifecycle
from oncall.alerts.models import Alert, EscalationClaim
from oncall.circles.models import EscalationPolicy
from oncall.core.clock import utcnow
from oncall.extensions import db
from oncall.notify import outbox
from oncall.notify.models import NotificationChannel, OutboxMessage
from oncall.notify.signing import webhook_secret
from tests import factories as f
from tests.peers import Delivery, WebhookReceiver
from tests.visits.conftest import make_visit

SHORT_POLICY = [
    {"target": "doctor", "after_seconds": 0, "repeat_every_seconds": None,
     "stop_on": "acknowledge"},
    {"target": "coordinator", "after_seconds": 2, "repeat_every_seconds": 2,
     "stop_on": "acknowledge"},
    {"target": "police", "after_seconds": 6, "repeat_every_seconds": None,
     "stop_on": "resolve"},
]
#: When each target is first due, in seconds after the deadline.
COORDINATOR_AFTER = 2
COORDINATOR_EVERY = 2
POLICE_AFTER = 6


def prepare_circle(world: Any, receiver: WebhookReceiver, secret_key: str) -> int:
    """Webhooks for the world's doctor, coordinator and a police contact, and the short
    policy; the receiver checks the circle's signatures. Returns the police contact id."""
    receiver.secrets = (webhook_secret(secret_key, world.circle.id),)
    now = utcnow()
    police = f.make_police_contact(world.circle, world.zone)
    for owner, path, contact in (
        (world.doctor, "doctor", False),
        (world.coordinator, "coordinator", False),
        (police, "police", True),
    ):
        db.session.add(NotificationChannel(
            circle_id=world.circle.id,
            user_id=None if contact else owner.id,
            police_contact_id=owner.id if contact else None,
            kind="webhook", address=f"{receiver.base_url}/hook/{path}", active=True,
            key_version=1, created_at=now, updated_at=now,
        ))
    db.session.add(EscalationPolicy(circle_id=world.circle.id, alert_kind="missed_arrival",
                                    steps=SHORT_POLICY, updated_at=now))
    db.session.commit()
    return int(police.id)


def arm_arrival(world: Any, in_seconds: float) -> tuple[int, datetime]:
    """A visit whose arrival deadline falls ``in_seconds`` from now (committed): its id
    and the deadline."""
    visit = make_visit(world.zone, "assigned", world.doctor)
    due = utcnow() + timedelta(seconds=in_seconds)
    deadlines.arm(circle_id=visit.circle_id, visit_id=visit.id, doctor_id=world.doctor.id,
                  kind="arrival", due_at=due, now=utcnow())
    db.session.commit()
    return visit.id, due


def alert_of(visit_id: int) -> Alert | None:
    """The visit's alert as committed now (None: none opened)."""
    db.session.rollback()
    return db.session.scalars(
        select(Alert).where(Alert.visit_id == visit_id).execution_options(populate_existing=True)
    ).first()


def deliveries_to(receiver: WebhookReceiver, who: str, kind: str = "alert.step",
                  alert_id: int | None = None) -> list[Delivery]:
    """Accepted deliveries of ``kind`` on ``/hook/<who>``, of one alert if given."""
    return [
        d for d in receiver.accepted()
        if d.path == f"/hook/{who}" and isinstance(d.body, dict) and d.body.get("type") == kind
        and (alert_id is None or d.body["alert"]["id"] == alert_id)
    ]


def seconds_after(delivery: Delivery, instant: datetime) -> float:
    """When the receiver got ``delivery``, in seconds after ``instant``."""
    return (delivery.received_at - instant).total_seconds()


def claims(alert_id: int) -> list[EscalationClaim]:
    """The alert's fired steps, by level."""
    db.session.rollback()
    return list(db.session.scalars(
        select(EscalationClaim).where(EscalationClaim.alert_id == alert_id)
        .order_by(EscalationClaim.level)
    ))


def outbox_rows(alert_id: int, *states: str) -> list[OutboxMessage]:
    """The alert's outbox rows (in the given states, if any)."""
    db.session.rollback()
    stmt = select(OutboxMessage).where(OutboxMessage.alert_id == alert_id)
    if states:
        stmt = stmt.where(OutboxMessage.state.in_(states))
    return list(db.session.scalars(stmt.order_by(OutboxMessage.id)))


def settled(alert_id: int) -> bool:
    """No message of the alert is still waiting to be sent."""
    return not outbox_rows(alert_id, "pending")


def take_charge(world: Any, alert_id: int, *, resolve: bool = False) -> datetime:
    """Acknowledge (or resolve) the alert as the coordinator, as the web would; when."""
    locked = lifecycle.lock_alert(world.circle.id, alert_id)
    assert locked is not None
    now = utcnow()
    if resolve:
        assert lifecycle.resolve(locked, world.coordinator.id, "Doctor reached, safe", now)
    else:
        assert lifecycle.acknowledge(locked, world.coordinator.id, now)
    outbox.hand_off_new()
    db.session.commit()
    return now


def check_exactly_once(receiver: WebhookReceiver, alert_id: int) -> None:
    """One claim per level, one accepted delivery per delivered row, no duplicates."""
    fired = claims(alert_id)
    assert [c.level for c in fired] == list(range(1, len(fired) + 1))
    pairs = [(c.step_index, c.repeat_no) for c in fired]
    assert len(pairs) == len(set(pairs))
    db.session.rollback()
    doubled = db.session.execute(
        select(EscalationClaim.level, func.count())
        .where(EscalationClaim.alert_id == alert_id)
        .group_by(EscalationClaim.level).having(func.count() > 1)
    ).all()
    assert doubled == []
    assert receiver.duplicates() == {}
    assert all(d.signature_ok for d in receiver.deliveries)
    delivered = {str(row.id) for row in outbox_rows(alert_id, "delivered")}
    keys = {d.key for d in receiver.accepted()
            if isinstance(d.body, dict) and d.body.get("alert", {}).get("id") == alert_id}
    assert keys == delivered
