"""Smoke test of the engine on SQLite, the embedded default: no row locks, same results."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config.settings import Settings
from oncall import create_app
from oncall.alerts import deadlines, lifecycle
from oncall.alerts.engine import process_due
from oncall.alerts.models import Alert, EscalationClaim
from oncall.extensions import db
from oncall.notify.models import NotificationChannel, OutboxMessage
from tests import factories as f
from tests.visits.conftest import NOW, make_visit


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Any]:
    app = create_app(
        Settings(
            profile="test",
            secret_key="s" * 40,
            database_url=f"sqlite:///{tmp_path / 'oncall.sqlite3'}",
            instance_path=str(tmp_path),
        )
    )
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()


def test_missed_arrival_escalates_and_resolves_on_sqlite(sqlite_app: Any) -> None:
    circle = f.make_circle("Embedded")
    zone = f.make_zone(circle, "Centre")
    doctor = f.make_user(circle, "doctor")
    coordinator = f.make_user(circle, "coordinator")
    police = f.make_police_contact(circle, zone, webhook_url="http://127.0.0.1:9/police")
    db.session.add(NotificationChannel(
        circle_id=circle.id, user_id=coordinator.id, kind="webhook",
        address="http://127.0.0.1:9/coordinator", active=True, key_version=1,
        created_at=NOW, updated_at=NOW,
    ))
    visit = make_visit(zone, "assigned", doctor)
    deadlines.arm(circle_id=circle.id, visit_id=visit.id, doctor_id=doctor.id,
                  kind="arrival", due_at=NOW, now=NOW - timedelta(minutes=30))
    db.session.commit()

    assert process_due(NOW).missed == 1
    process_due(NOW + timedelta(minutes=2))
    process_due(NOW + timedelta(minutes=10))
    alert = db.session.scalars(select(Alert)).one()
    targets = [c.target for c in db.session.scalars(
        select(EscalationClaim).order_by(EscalationClaim.level))]
    assert targets == ["doctor", "coordinator", "coordinator", "police"][: len(targets)]
    assert {"coordinator", "police"} <= set(targets)
    recipients = {(m.recipient_type, m.recipient_id) for m in db.session.scalars(
        select(OutboxMessage))}
    assert ("police_contact", police.id) in recipients
    assert ("user", coordinator.id) in recipients

    locked = lifecycle.lock_alert(circle.id, alert.id)
    assert locked is not None
    assert lifecycle.resolve(locked, coordinator.id, "safe", NOW + timedelta(minutes=11))
    db.session.commit()
    assert process_due(NOW + timedelta(hours=1)).steps_fired == 0
