"""The tasks call the engine and the outbox; a second run finds nothing left to do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import select

from config.settings import Settings
from oncall import create_app
from oncall.alerts import deadlines
from oncall.alerts.models import Alert, Deadline
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.extensions import db
from oncall.notify import outbox
from oncall.notify.models import NotificationChannel, OutboxMessage
from tests.peers import WebhookReceiver
from tests.visits.conftest import NOW, make_visit
from workers import tasks
from workers.celery_app import celery_app


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as peer:
        yield peer


def _doctor_webhook(world: Any, url: str) -> None:
    db.session.add(NotificationChannel(
        circle_id=world.circle.id, user_id=world.doctor.id, kind="webhook", address=url,
        active=True, key_version=1, created_at=NOW, updated_at=NOW,
    ))
    db.session.commit()


def _due_deadlines(world: Any, count: int) -> list[int]:
    due = utcnow() - timedelta(seconds=1)
    ids = []
    for _ in range(count):
        visit = make_visit(world.zone, "assigned", world.doctor)
        row = deadlines.arm(circle_id=visit.circle_id, visit_id=visit.id,
                            doctor_id=world.doctor.id, kind="arrival", due_at=due,
                            now=due - timedelta(minutes=5))
        ids.append(row.id)
    db.session.commit()
    return ids


def test_the_engine_tasks_are_on_the_critical_queue() -> None:
    celery_app.loader.import_default_modules()
    for name in (dispatch.PROCESS_DUE, dispatch.DELIVER, "notify.relay"):
        assert name in celery_app.tasks
        assert celery_app.conf.task_routes[name] == {"queue": "critical"}


def test_process_due_moves_what_is_due_and_delivers_inline(
    world: Any, receiver: WebhookReceiver
) -> None:
    _doctor_webhook(world, f"{receiver.url}/doctor")
    ids = _due_deadlines(world, 2)

    totals = tasks.process_due.run()

    assert totals["missed"] == 2
    assert totals["delivered"] == 2
    # Delivered within the task itself, not handed to another task.
    assert len(receiver.accepted()) == 2
    db.session.rollback()
    states = {d.state for d in db.session.scalars(select(Deadline).where(Deadline.id.in_(ids)))}
    assert states == {"missed"}
    assert all(m.state == "delivered" for m in db.session.scalars(select(OutboxMessage)))

    again = tasks.process_due.run()  # a duplicated task finds nothing
    assert again == {"batches": 1, "missed": 0, "steps_fired": 0, "delivered": 0}
    assert len(receiver.deliveries) == 2


def test_process_due_also_sends_messages_whose_retry_is_due(
    world: Any, receiver: WebhookReceiver
) -> None:
    ids = _pending(world, f"{receiver.url}/coordinator", 1)
    row = db.session.get(OutboxMessage, ids[0])
    row.attempts = 1
    row.next_attempt_at = utcnow() - timedelta(milliseconds=10)
    db.session.commit()
    assert tasks.process_due.run()["delivered"] == 1
    assert receiver.unique_keys() == {str(ids[0])}


def test_a_full_batch_sends_another_task_to_share_the_burst(
    settings: Settings, world: Any, receiver: WebhookReceiver
) -> None:
    _doctor_webhook(world, f"{receiver.url}/doctor")
    _due_deadlines(world, 3)
    small: APIFlask = create_app(settings.with_(sweep_batch_size=1))
    sender = dispatch.NullSender()
    dispatch.init_app(small, sender)
    try:
        with small.app_context():
            totals = tasks.process_due.run()
    finally:
        with small.app_context():
            db.engine.dispose()
    assert totals["missed"] == 3
    assert totals["batches"] == 4  # three full batches, then an empty one
    shared = [name for name, _args in sender.sent if name == dispatch.PROCESS_DUE]
    assert len(shared) == 3
    assert len(receiver.accepted()) == 3
    db.session.rollback()
    assert len(list(db.session.scalars(select(Alert)))) == 3


def _pending(world: Any, url: str, count: int) -> list[int]:
    rows = [
        outbox.add(circle_id=world.circle.id, purpose="test", recipient_type="user",
                   recipient_id=world.coordinator.id, channel="webhook", address=url,
                   subject="s", body="b", payload={"type": "test"}, now=utcnow())
        for _ in range(count)
    ]
    db.session.commit()
    return [row.id for row in rows]


def test_deliver_sends_the_given_rows_once(world: Any, receiver: WebhookReceiver) -> None:
    ids = _pending(world, f"{receiver.url}/coordinator", 3)
    result = tasks.deliver.run(ids[:2])
    assert result["delivered"] == 2
    assert receiver.unique_keys() == {str(i) for i in ids[:2]}
    assert tasks.deliver.run(ids[:2])["delivered"] == 0  # a stale or duplicated task
    assert len(receiver.deliveries) == 2


def test_relay_sends_every_due_row(world: Any, receiver: WebhookReceiver) -> None:
    ids = _pending(world, f"{receiver.url}/coordinator", 3)
    assert tasks.relay.run()["delivered"] == 3
    assert receiver.unique_keys() == {str(i) for i in ids}
    assert tasks.relay.run()["delivered"] == 0
    assert receiver.duplicates() == {}
