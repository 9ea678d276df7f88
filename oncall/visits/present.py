"""Visits as the API shows them: plain dictionaries in the shape of the output schemas.

A visit is shown with its deadlines (arrival and departure, read in one query for
a whole list) and ``leave_by``, the time the departure deadline expects the doctor
to leave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from oncall.accounts.models import User
from oncall.alerts.models import Deadline
from oncall.core.timeline import TimelineEvent
from oncall.extensions import db
from oncall.rota.models import Shift
from oncall.visits.models import Visit


def doctor_names(ids: Sequence[int | None], circle_id: int) -> dict[int, str]:
    """The names of the circle's users among ``ids``, by id (one query)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = db.session.execute(
        select(User.id, User.name).where(User.circle_id == circle_id, User.id.in_(wanted))
    )
    return {row.id: row.name for row in rows}


#: A visit's deadline rows by kind ("arrival", "departure").
Deadlines = Mapping[str, Deadline]


def deadlines_of(visit_ids: Sequence[int]) -> dict[int, dict[str, Deadline]]:
    """The deadline rows of the visits, by visit id and kind (one query)."""
    out: dict[int, dict[str, Deadline]] = {}
    if not visit_ids:
        return out
    for row in db.session.scalars(select(Deadline).where(Deadline.visit_id.in_(set(visit_ids)))):
        out.setdefault(row.visit_id, {})[row.kind] = row
    return out


def present_deadlines(rows: Deadlines) -> dict[str, Any]:
    """``{"arrival": {...} | None, "departure": {...} | None}`` as ``DeadlinesOut``."""
    arrival = rows.get("arrival")
    departure = rows.get("departure")
    return {
        "arrival": None
        if arrival is None
        else {"due_at": arrival.due_at, "state": arrival.state},
        "departure": None
        if departure is None
        else {
            "due_at": departure.due_at,
            "state": departure.state,
            "remind_at": departure.remind_at,
            "extended_minutes": departure.extended_minutes or 0,
        },
    }


def present_visit(
    visit: Visit,
    names: Mapping[int, str],
    timeline: Sequence[TimelineEvent] | None = None,
    deadlines: Deadlines | None = None,
) -> dict[str, Any]:
    """A visit as ``VisitOut`` (``VisitDetailOut`` with a timeline); doctor names from
    ``names``, deadline rows from ``deadlines`` (read here when not given)."""
    rows = deadlines if deadlines is not None else deadlines_of([visit.id]).get(visit.id, {})
    departure = rows.get("departure")
    location = None
    if visit.last_lat is not None and visit.last_lon is not None:
        location = {
            "lat": visit.last_lat,
            "lon": visit.last_lon,
            "accuracy": visit.last_accuracy_m,
            "at": visit.last_location_at,
        }
    out: dict[str, Any] = {
        "id": visit.id,
        "call_id": visit.call_id,
        "zone_id": visit.zone_id,
        "doctor_id": visit.doctor_id,
        "doctor_name": names.get(visit.doctor_id) if visit.doctor_id is not None else None,
        "status": visit.status,
        "unassigned_reason": visit.unassigned_reason,
        "patient": visit.patient_dict(),
        "address": visit.address_dict(),
        "preparation": visit.preparation_dict(),
        "reason": visit.reason,
        "identity_verified": bool(visit.identity_verified),
        "arrive_by": visit.arrive_by,
        "leave_by": departure.due_at if departure is not None else None,
        "created_at": visit.created_at,
        "updated_at": visit.updated_at,
        "assigned_at": visit.assigned_at,
        "checked_in_at": visit.checked_in_at,
        "checked_out_at": visit.checked_out_at,
        "cancelled_at": visit.cancelled_at,
        "cancel_reason": visit.cancel_reason,
        "outcome_note": visit.outcome_note,
        "last_location": location,
        "deadlines": present_deadlines(rows),
    }
    if timeline is not None:
        out["timeline"] = [event.to_dict() for event in timeline]
    return out


def present_one(visit: Visit, timeline: Sequence[TimelineEvent] | None = None) -> dict[str, Any]:
    """One visit with its doctor's name (and its timeline when given)."""
    return present_visit(visit, doctor_names([visit.doctor_id], visit.circle_id), timeline)


def present_many(visits: Sequence[Visit], circle_id: int) -> list[dict[str, Any]]:
    """Visits in the given order, their doctors' names read in one query."""
    names = doctor_names([v.doctor_id for v in visits], circle_id)
    rows = deadlines_of([v.id for v in visits])
    return [present_visit(v, names, deadlines=rows.get(v.id, {})) for v in visits]


def present_itinerary(
    doctor: User, start: datetime, end: datetime, shift: Shift | None, visits: Sequence[Visit]
) -> dict[str, Any]:
    """A doctor's itinerary as ``ItineraryOut``: the window, the current shift, the visits."""
    names = {doctor.id: doctor.name}
    rows = deadlines_of([v.id for v in visits])
    return {
        "doctor_id": doctor.id,
        "doctor_name": doctor.name,
        "start": start,
        "end": end,
        "shift": None
        if shift is None
        else {
            "id": shift.id,
            "zone_id": shift.zone_id,
            "starts_at": shift.starts_at,
            "ends_at": shift.ends_at,
        },
        "visits": [
            present_visit(visit, names, deadlines=rows.get(visit.id, {})) for visit in visits
        ],
    }
