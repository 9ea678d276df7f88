"""The escalation engine, driven by hand with explicit instants (no worker, no scheduler).

Policies are the defaults: a missed deadline reminds the doctor at once, tells
the coordinators after 2 min and every 2 min until acknowledged, and the police
after 10 min unless resolved.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from oncall.alerts import deadlines, lifecycle
from oncall.alerts.engine import process_due
from oncall.alerts.models import Alert, Deadline, EscalationClaim
from oncall.extensions import db
from oncall.notify.models import OutboxMessage
from tests import factories as f
from tests.alerts.conftest import webhook
from tests.visits.conftest import NOW, make_visit


def _armed_visit(world: Any, due_in: timedelta = timedelta(minutes=30)) -> Any:
    visit = make_visit(world.zone, "assigned", world.doctor)
    deadlines.arm(circle_id=visit.circle_id, visit_id=visit.id, doctor_id=world.doctor.id,
                  kind="arrival", due_at=NOW + due_in, now=NOW)
    db.session.commit()
    return visit


def _messages(target_type: str, recipient_id: int) -> list[OutboxMessage]:
    db.session.rollback()
    return list(db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.recipient_type == target_type,
               OutboxMessage.recipient_id == recipient_id)
        .order_by(OutboxMessage.id)
    ))


def _setup(world: Any) -> Any:
    webhook(world.doctor, "http://127.0.0.1:9/doctor")
    webhook(world.coordinator, "http://127.0.0.1:9/coordinator")
    return f.make_police_contact(
        world.circle, world.zone, webhook_url="http://127.0.0.1:9/police"
    )


def test_nothing_happens_before_the_deadline(world: Any) -> None:
    _setup(world)
    _armed_visit(world)
    result = process_due(NOW + timedelta(minutes=29, seconds=59))
    assert result.missed == 0
    assert db.session.scalar(select(func.count()).select_from(Alert)) == 0


def test_a_missed_arrival_escalates_on_the_policy_times(world: Any) -> None:
    police = _setup(world)
    visit = _armed_visit(world)
    due = NOW + timedelta(minutes=30)

    result = process_due(due + timedelta(milliseconds=5))
    assert result.missed == 1
    alert = db.session.scalars(select(Alert)).one()
    assert alert.kind == "missed_arrival"
    assert alert.visit_id == visit.id
    assert [m.channel for m in _messages("user", world.doctor.id)] == ["webhook"]
    assert _messages("user", world.coordinator.id) == []
    assert alert.next_step_at == due + timedelta(minutes=2)

    # Coordinator at +2 min, again at +4 min; the police not before +10 min.
    process_due(due + timedelta(minutes=2))
    assert len(_messages("user", world.coordinator.id)) == 1
    process_due(due + timedelta(minutes=3))
    assert len(_messages("user", world.coordinator.id)) == 1
    process_due(due + timedelta(minutes=4))
    assert len(_messages("user", world.coordinator.id)) == 2
    assert _messages("police_contact", police.id) == []
    process_due(due + timedelta(minutes=10))
    police_messages = _messages("police_contact", police.id)
    assert len(police_messages) == 1
    briefing = police_messages[0].payload["briefing"]
    assert briefing["doctor"]["name"] == world.doctor.name
    assert briefing["visit"]["address"]["street"] == "Rue Haute"

    claims = list(db.session.scalars(select(EscalationClaim).order_by(EscalationClaim.level)))
    assert [c.level for c in claims] == list(range(1, len(claims) + 1))
    assert db.session.get(Deadline, alert.deadline_id).state == "missed"


def test_acknowledge_stops_the_repeats_and_resolve_stops_everything(world: Any) -> None:
    police = _setup(world)
    _armed_visit(world)
    due = NOW + timedelta(minutes=30)
    process_due(due)
    process_due(due + timedelta(minutes=2))
    alert = db.session.scalars(select(Alert)).one()
    locked = lifecycle.lock_alert(world.circle.id, alert.id)
    assert locked is not None
    assert lifecycle.acknowledge(locked, world.coordinator.id, due + timedelta(minutes=3))
    db.session.commit()
    process_due(due + timedelta(minutes=8))
    assert len(_messages("user", world.coordinator.id)) == 1  # no repeat after acknowledging
    process_due(due + timedelta(minutes=10))
    assert len(_messages("police_contact", police.id)) == 1  # the police step still runs

    locked = lifecycle.lock_alert(world.circle.id, alert.id)
    assert locked is not None
    lifecycle.resolve(
        locked, world.coordinator.id, "Doctor reached, safe", due + timedelta(minutes=11)
    )
    db.session.commit()
    process_due(due + timedelta(hours=2))
    police_messages = _messages("police_contact", police.id)
    stand_down = [m for m in police_messages if m.purpose == "alert.resolved"]
    assert len(stand_down) == 1
    # One claim each: the doctor, the coordinator, the police.
    assert db.session.scalar(select(func.count()).select_from(EscalationClaim)) == 3


def test_a_late_sweep_fires_a_repeating_step_once(world: Any) -> None:
    _setup(world)
    _armed_visit(world)
    due = NOW + timedelta(minutes=30)
    process_due(due)
    process_due(due + timedelta(minutes=2))
    # Nothing ran for 7 minutes: the +4, +6 and +8 repeats collapse into one.
    process_due(due + timedelta(minutes=9))
    assert len(_messages("user", world.coordinator.id)) == 2
    alert = db.session.scalars(select(Alert)).one()
    assert alert.next_step_at == due + timedelta(minutes=10)


def test_a_second_pass_at_the_same_instant_does_nothing(world: Any) -> None:
    _setup(world)
    _armed_visit(world)
    due = NOW + timedelta(minutes=30)
    first = process_due(due + timedelta(minutes=2))
    second = process_due(due + timedelta(minutes=2))
    assert first.missed == 1
    assert first.steps_fired >= 2
    assert (second.missed, second.steps_fired, second.outbox_ids) == (0, 0, [])


def test_the_departure_reminder_goes_to_the_doctor_before_the_deadline(world: Any) -> None:
    _setup(world)
    visit = make_visit(world.zone, "on_site", world.doctor)
    deadlines.arm(circle_id=visit.circle_id, visit_id=visit.id, doctor_id=world.doctor.id,
                  kind="departure", due_at=NOW + timedelta(minutes=45), now=NOW,
                  remind_before=timedelta(minutes=5))
    db.session.commit()
    assert process_due(NOW + timedelta(minutes=39)).reminded == 0
    assert process_due(NOW + timedelta(minutes=40)).reminded == 1
    assert process_due(NOW + timedelta(minutes=41)).reminded == 0
    reminders = [m for m in _messages("user", world.doctor.id) if m.purpose == "deadline.reminder"]
    assert len(reminders) == 1
