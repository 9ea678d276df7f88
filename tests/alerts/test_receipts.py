"""Each delivery attempt of an alert's message is written on the alert's timeline."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from oncall.alerts.engine import open_alert
from oncall.core.clock import utcnow
from oncall.core.timeline import TimelineEvent
from oncall.extensions import db
from oncall.notify import outbox
from oncall.notify.models import DeliveryAttempt, OutboxMessage
from tests.alerts.conftest import webhook
from tests.peers import WebhookReceiver


def _timeline(alert_id: int) -> list[TimelineEvent]:
    db.session.rollback()
    return list(db.session.scalars(
        select(TimelineEvent)
        .where(TimelineEvent.subject_type == "alert", TimelineEvent.subject_id == alert_id,
               TimelineEvent.kind.like("delivery.%"))
        .order_by(TimelineEvent.id)
    ))


def test_a_failed_then_delivered_message_leaves_both_attempts_on_the_timeline(
    app: Any, world: Any
) -> None:
    with WebhookReceiver.for_circles(app.config["SECRET_KEY"], [world.circle.id]) as receiver:
        webhook(world.coordinator, f"{receiver.url}/coordinator")
        alert = open_alert(circle_id=world.circle.id, kind="panic", now=utcnow(),
                           doctor_id=world.doctor.id)
        ids = outbox.take_new()
        db.session.commit()
        assert len(ids) == 1

        receiver.fail_next(1, 503)
        first = outbox.deliver(ids)
        assert first.retrying == ids
        second = outbox.deliver(ids, now=utcnow() + outbox.backoff(1, app.config["ONCALL"]))
        assert second.delivered == ids
        assert receiver.wait_for(1, timeout=5)
        assert receiver.duplicates() == {}

    events = _timeline(alert.id)
    assert [e.kind for e in events] == ["delivery.retrying", "delivery.delivered"]
    assert [e.data["attempt"] for e in events] == [1, 2]
    assert events[0].data["detail"].startswith("HTTP 503")
    assert all("address" not in e.data and "/coordinator" not in str(e.data) for e in events)
    row = db.session.get(OutboxMessage, ids[0])
    assert row is not None
    assert (row.state, row.attempts) == ("delivered", 2)
    attempts = db.session.scalars(
        select(DeliveryAttempt.ok).where(DeliveryAttempt.outbox_id == row.id)
        .order_by(DeliveryAttempt.attempt)
    ).all()
    assert attempts == [False, True]
