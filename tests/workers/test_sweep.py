"""The scheduler's work: the sweep, the horizon of wake-ups, and the audit of late rows."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from oncall.alerts import deadlines
from oncall.alerts.engine import process_due
from oncall.alerts.models import Alert, Deadline
from oncall.core.clock import utcnow
from oncall.core.dispatch import NullSender
from oncall.extensions import db
from oncall.notify import outbox
from oncall.notify.models import NotificationChannel, OutboxMessage
from tests.peers import WebhookReceiver
from tests.visits.conftest import NOW, make_visit
from workers import sweep as sweeps


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as peer:
        yield peer


def _arm(world: Any, due_at: datetime, *, armed_at: datetime = NOW,
         remind_before: timedelta | None = None, kind: str = "arrival") -> Deadline:
    visit = make_visit(world.zone, "assigned", world.doctor)
    row = deadlines.arm(circle_id=visit.circle_id, visit_id=visit.id, doctor_id=world.doctor.id,
                        kind=kind, due_at=due_at, now=armed_at, remind_before=remind_before)
    db.session.commit()
    return row


def _message(world: Any, next_attempt_at: datetime, state: str = "pending") -> OutboxMessage:
    row = outbox.add(circle_id=world.circle.id, purpose="test", recipient_type="user",
                     recipient_id=world.coordinator.id, channel="webhook",
                     address="http://127.0.0.1:9/x", subject="s", body="b",
                     payload={"type": "test"}, now=NOW)
    db.session.flush()
    row.next_attempt_at = next_attempt_at
    row.state = state
    db.session.commit()
    return row


def test_sweep_runs_the_engine_until_nothing_is_due_then_relays(
    world: Any, receiver: WebhookReceiver
) -> None:
    db.session.add(NotificationChannel(
        circle_id=world.circle.id, user_id=world.doctor.id, kind="webhook",
        address=f"{receiver.url}/doctor", active=True, key_version=1,
        created_at=NOW, updated_at=NOW,
    ))
    db.session.commit()
    due = utcnow() - timedelta(seconds=2)
    for _ in range(3):
        _arm(world, due, armed_at=due - timedelta(minutes=30))

    result = sweeps.sweep(batch_size=1)

    assert result.missed == 3
    assert result.batches == 4
    assert result.delivered == 3  # sent by the sweep itself, no worker involved
    assert len(receiver.accepted()) == 3
    db.session.rollback()
    assert {d.state for d in db.session.scalars(select(Deadline))} == {"missed"}


def test_horizon_wakes_the_engine_for_near_times_only(world: Any) -> None:
    near_deadline = NOW + timedelta(minutes=10)
    _arm(world, near_deadline)
    _arm(world, NOW + timedelta(hours=2))  # beyond the longest countdown
    _arm(world, NOW - timedelta(seconds=5))  # already due: the sweep's business
    departure = _arm(world, NOW + timedelta(minutes=12), kind="departure",
                     remind_before=timedelta(minutes=5))
    assert departure.remind_at == NOW + timedelta(minutes=7)
    met = _arm(world, NOW + timedelta(minutes=3))
    deadlines.close(met.visit_id, "arrival", "met", NOW)
    db.session.commit()
    retry_at = NOW + timedelta(seconds=30)
    _message(world, retry_at)
    _message(world, NOW + timedelta(seconds=40), state="delivered")

    # An alert whose next step is 2 minutes after its due time.
    opened_due = NOW - timedelta(seconds=5)
    process_due(NOW)
    alert = db.session.scalars(select(Alert)).one()
    assert alert.next_step_at == opened_due + timedelta(minutes=2)

    sender = NullSender()
    sent = sweeps.horizon(sender, NOW, within_seconds=15 * 60)

    expected = sorted({
        near_deadline, NOW + timedelta(minutes=12), NOW + timedelta(minutes=7),
        retry_at, alert.next_step_at,
    })
    assert sent == expected
    assert sender.wakes == expected


def test_horizon_stops_at_the_first_broker_failure(world: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    _arm(world, NOW + timedelta(minutes=1))
    _arm(world, NOW + timedelta(minutes=2))

    class Down(NullSender):
        def wake_at(self, when: datetime) -> None:
            super().wake_at(when)
            raise ConnectionError("broker down")

    sender = Down()
    caplog.set_level(logging.WARNING, logger="workers.sweep")
    assert sweeps.horizon(sender, NOW) == []
    assert len(sender.wakes) == 1
    assert "left to the sweep" in caplog.text


def test_audit_reports_late_rows_by_id(world: Any, caplog: pytest.LogCaptureFixture) -> None:
    now = NOW
    late = _arm(world, now - timedelta(seconds=10))
    _arm(world, now - timedelta(seconds=1))  # within two sweep intervals: not late yet
    stuck = _message(world, now - timedelta(seconds=90))
    _message(world, now - timedelta(seconds=30))  # not late yet
    _message(world, now - timedelta(seconds=300), state="delivered")

    caplog.set_level(logging.WARNING, logger="workers.sweep")
    report = sweeps.audit(now, sweep_seconds=2)

    assert report.late_deadline_ids == [late.id]
    assert report.late_outbox_ids == [stuck.id]
    assert report.oldest_overdue_deadline_seconds == 10
    assert report.oldest_pending_outbox_seconds == 90
    assert not report.clean
    assert f"[{late.id}]" in caplog.text
    assert f"[{stuck.id}]" in caplog.text
    assert "Dupont" not in caplog.text  # ids, never patient data
    assert report.as_dict()["at"] == now.isoformat()


def test_audit_of_a_quiet_system_is_clean(world: Any) -> None:
    _arm(world, NOW + timedelta(minutes=5))
    report = sweeps.audit(NOW, sweep_seconds=2)
    assert report.clean
    assert report.oldest_overdue_deadline_seconds is None
    assert report.oldest_pending_outbox_seconds is None
