"""Factories and fixtures of the visits tests: calls and visits written through the ORM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from oncall.accounts.models import User
from oncall.calls.models import Call
from oncall.circles.models import Circle, Zone
from oncall.core.timeline import AccessLogEntry, TimelineEvent
from oncall.extensions import db
from oncall.visits.models import Visit
from tests import factories as f

#: A fixed instant for service-level tests (a winter evening in Brussels).
NOW = datetime(2030, 1, 15, 20, 0, tzinfo=UTC)


def make_call(circle: Circle, now: datetime = NOW, **kw: Any) -> Call:
    """A call logged by hand, with a patient and an address."""
    values: dict[str, Any] = {
        "caller_number": "+3221234567",
        "patient_name": "Jeanne Dupont",
        "patient_age": 84,
        "patient_phone": "+3221234567",
        "address_street": "Rue Haute",
        "address_number": "12",
        "address_postcode": "1000",
        "address_city": "Bruxelles",
        "address_dwelling": "flat",
        "address_floor": "3",
        "caller_relation": "family",
        "dogs_secured": True,
        "reason": "Fever and confusion",
        "identity_verified": True,
    }
    values.update(kw)
    call = Call(circle_id=circle.id, created_at=now, updated_at=now, **values)
    db.session.add(call)
    db.session.commit()
    return call


def make_visit(
    zone: Zone,
    status: str = "assigned",
    doctor: User | None = None,
    now: datetime = NOW,
    call: Call | None = None,
    **kw: Any,
) -> Visit:
    """A visit written directly in ``status`` (with the timestamps that state implies)."""
    circle = db.session.get(Circle, zone.circle_id)
    call = call or make_call(circle, now)
    visit = Visit(
        circle_id=zone.circle_id,
        call_id=call.id,
        zone_id=zone.id,
        doctor_id=doctor.id if doctor is not None and status != "unassigned" else None,
        status=status,
        created_at=now,
        updated_at=now,
        patient_name=call.patient_name,
        address_street=call.address_street,
        address_city=call.address_city,
        **kw,
    )
    if status != "unassigned":
        visit.assigned_at = visit.assigned_at or now
    else:
        visit.unassigned_reason = "no_doctor_on_duty"
    if status in ("on_site", "completed"):
        visit.checked_in_at = visit.checked_in_at or now
    if status == "completed":
        visit.checked_out_at = visit.checked_out_at or now
    if status == "cancelled":
        visit.cancelled_at = now
        visit.cancel_reason = "test"
    db.session.add(visit)
    db.session.commit()
    return visit


def on_shift(
    zone: Zone, doctor: User, now: datetime = NOW, *, started: timedelta = timedelta(hours=1)
) -> Any:
    """A shift of ``doctor`` in ``zone`` that started ``started`` before ``now`` and lasts 8 h."""
    return f.make_shift(zone, doctor, now - started, now - started + timedelta(hours=8))


def counts() -> dict[str, int]:
    """Row counts of everything a visit use case may write."""
    db.session.rollback()
    return {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
        for model in (Visit, TimelineEvent, AccessLogEntry)
    } | {
        "calls_with_outcome": db.session.scalar(
            select(func.count()).select_from(Call).where(Call.outcome.is_not(None))
        )
    }


def events(visit_id: int, subject: str = "visit") -> list[TimelineEvent]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(TimelineEvent)
            .where(TimelineEvent.subject_type == subject, TimelineEvent.subject_id == visit_id)
            .order_by(TimelineEvent.id)
        )
    )


def kinds(visit_id: int) -> list[str]:
    return [e.kind for e in events(visit_id)]


def visit_events(visit_id: int) -> list[TimelineEvent]:
    """The visit's own events (``visit.*``), without those of its deadlines and alerts."""
    return [e for e in events(visit_id) if e.kind.startswith("visit.")]


def visit_kinds(visit_id: int) -> list[str]:
    return [e.kind for e in visit_events(visit_id)]


@pytest.fixture
def doctors(world: Any) -> list[User]:
    """Three more doctors of the world's circle (lowest id first)."""
    return [f.make_user(world.circle, "doctor") for _ in range(3)]


def has_field(fields: dict[str, Any], name: str) -> bool:
    """``name`` is reported itself or through one of its parts (``name.x``)."""
    return any(key == name or key.startswith(name + ".") for key in fields)
