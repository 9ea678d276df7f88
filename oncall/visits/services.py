"""Visit use cases: creation from a call, assignment, cancellation, check-in/out, itinerary.

Every function is one transaction: it validates, writes the change, the timeline
events and the access-log rows, and commits once. On any error nothing is
committed. Results are returned as plain dictionaries, ready to serialise.

This module holds the changes; the reads (one visit, the list, the itinerary)
are in :mod:`oncall.visits.queries` and are offered here too, so that callers
need only this module. Input checks are in :mod:`oncall.visits.checks`, the
output shapes in :mod:`oncall.visits.present`, the assignment rule and the lock
order in :mod:`oncall.visits.assignment`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from oncall.accounts.models import User
from oncall.calls.checks import circle_of
from oncall.calls.models import Call
from oncall.circles.models import Zone
from oncall.core.tenancy import scoped
from oncall.core.timeline import record
from oncall.errors import Conflict, Validator
from oncall.extensions import db
from oncall.visits.assignment import (
    NO_DOCTOR_ON_DUTY,
    hold_circle,
    lock_doctors,
    on_duty_now,
    pick_doctor,
)
from oncall.visits.checks import (
    MAX_BIGINT,
    MAX_NOTE,
    MAX_REASON,
    MAX_UNASSIGN_REASON,
    check_arrival,
    check_doctor,
    check_location,
    check_patient,
    check_text,
    is_id,
)
from oncall.visits.common import (
    DISPATCH_ROLES,
    MANAGE_ROLES,
    atomic,
    circle_timezone,
    load_visit,
    locked,
    require_role,
)
from oncall.visits.models import OPEN_STATES, TRANSITIONS, Visit
from oncall.visits.present import present_one
from oncall.visits.queries import ensure_visible, get_visit, itinerary, list_visits, visit_timeline

__all__ = [
    "assign_visit",
    "cancel_visit",
    "check_in",
    "check_out",
    "create_visit",
    "ensure_visible",
    "get_visit",
    "itinerary",
    "list_visits",
    "visit_timeline",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- helpers


def _event(visit: Visit, kind: str, actor: User | None, now: datetime, **data: Any) -> None:
    record(visit.circle_id, "visit", visit.id, kind, now, actor.id if actor else None, **data)


def _move(
    visit: Visit,
    to: str,
    *,
    actor: User | None,
    now: datetime,
    kind: str,
    code: str,
    **data: Any,
) -> None:
    """The one place a visit changes state: checks TRANSITIONS, stamps, writes the event.

    Raises :class:`Conflict` (409, ``code``) naming the from and to states when the
    table does not allow the change.
    """
    origin = visit.status
    if to not in TRANSITIONS.get(origin, frozenset()):
        raise Conflict(
            f"Visit {visit.id} is {origin}; it cannot become {to}.",
            code=code,
            fields={"status": [f"{origin} -> {to} is not allowed"]},
        )
    visit.status = to
    visit.updated_at = now
    _event(visit, kind, actor, now, from_status=origin, to_status=to, **data)


def _store_location(
    visit: Visit, location: Mapping[str, float | None] | None, now: datetime
) -> None:
    if location is None:
        return
    visit.last_lat = location["lat"]
    visit.last_lon = location["lon"]
    visit.last_accuracy_m = location.get("accuracy")
    visit.last_location_at = now


# --------------------------------------------------------------------------- use cases


@atomic
def create_visit(actor: User, data: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Create a visit from a call of the circle and assign it to the doctor on duty.

    Copies patient, address and preparation from the call, then applies the given
    overrides. Assigns the doctor on duty in the zone at ``now`` with the fewest
    open visits (then earliest shift start, then lowest id), serialised per zone and
    per doctor (a doctor on duty in two zones counts every visit given to them);
    with nobody on duty the visit stays ``unassigned`` (``no_doctor_on_duty``).
    Sets the call's outcome to ``home_visit`` when it had none. 422 on bad input,
    409 ``call_has_open_visit`` when the call already has an open visit.
    """
    require_role(actor, DISPATCH_ROLES)
    hold_circle(actor.circle_id)
    v = Validator()
    tz = circle_timezone(actor)

    call: Call | None = None
    call_id = data.get("call_id")
    if call_id is None:
        v.add("call_id", "Missing data for required field.")
    elif not is_id(call_id, MAX_BIGINT):
        v.add("call_id", "No such call in this circle.")
    else:
        call = db.session.scalars(
            locked(scoped(Call, actor.circle_id).where(Call.id == call_id), key_share=True)
        ).first()
        if call is None:
            v.add("call_id", "No such call in this circle.")

    zone: Zone | None = None
    zone_id = data.get("zone_id")
    if zone_id is None:
        v.add("zone_id", "Missing data for required field.")
    elif not is_id(zone_id):
        v.add("zone_id", "No such zone in this circle.")
    else:
        # The zone lock serialises creations in this zone; the doctors' row locks
        # (see pick_doctor) serialise creations that share a doctor across zones.
        zone = db.session.scalars(
            locked(scoped(Zone, actor.circle_id).where(Zone.id == zone_id), key_share=True)
        ).first()
        if zone is None:
            v.add("zone_id", "No such zone in this circle.")
        elif not zone.active:
            v.add("zone_id", "This zone is not active.")

    arrive_by = check_arrival(v, data, now, tz)
    patient, address, prep = check_patient(v, data, now, circle_of(actor), current=call)
    v.raise_if_any()
    assert call is not None
    assert zone is not None

    open_visit = db.session.scalars(
        select(Visit.id).where(
            Visit.circle_id == actor.circle_id,
            Visit.call_id == call.id,
            Visit.status.in_(OPEN_STATES),
        )
    ).first()
    if open_visit is not None:
        raise Conflict(
            f"Call {call.id} already has an open visit ({open_visit}).",
            code="call_has_open_visit",
        )

    visit = Visit(
        circle_id=actor.circle_id,
        call_id=call.id,
        zone_id=zone.id,
        status="unassigned",
        arrive_by=arrive_by,
        created_by_id=actor.id,
        created_at=now,
        updated_at=now,
    )
    visit.copy_patient_from(call)
    visit.reason = call.reason
    visit.identity_verified = bool(call.identity_verified)
    visit.apply_patient(patient, address, prep)
    if "reason" in data:
        visit.reason = data["reason"]
    if "identity_verified" in data:
        visit.identity_verified = bool(data["identity_verified"])
    db.session.add(visit)
    db.session.flush()
    _event(
        visit, "visit.created", actor, now, call_id=call.id, zone_id=zone.id, arrive_by=arrive_by
    )

    doctor, on_duty_count = pick_doctor(actor.circle_id, zone.id, now)
    if doctor is not None:
        visit.doctor_id = doctor.id
        visit.assigned_at = now
        _move(
            visit,
            "assigned",
            actor=actor,
            now=now,
            kind="visit.assigned",
            code="visit_not_assignable",
            doctor_id=doctor.id,
            on_duty=True,
            rule="on_duty_fewest_open_visits",
            doctors_on_duty=on_duty_count,
        )
    else:
        visit.unassigned_reason = NO_DOCTOR_ON_DUTY
        _event(
            visit,
            "visit.unassigned",
            actor,
            now,
            reason=NO_DOCTOR_ON_DUTY,
            message=f"Nobody is on duty in zone {zone.name} at {now.isoformat()}.",
        )

    if call.outcome is None:
        call.outcome = "home_visit"
        call.updated_at = now
        record(
            actor.circle_id,
            "call",
            call.id,
            "call.outcome_set",
            now,
            actor.id,
            outcome="home_visit",
            visit_id=visit.id,
        )

    out = present_one(visit)
    db.session.commit()
    logger.info(
        "visit %s created from call %s in zone %s: %s", visit.id, call.id, zone.id, out["status"]
    )
    return out


@atomic
def assign_visit(
    actor: User, visit_id: int, doctor_id: int | None, now: datetime, reason: str | None = None
) -> dict[str, Any]:
    """Assign the visit to an active doctor of the circle, or unassign it (``None``, with a reason).

    Allowed from ``unassigned`` and ``assigned`` only (else 409 ``visit_not_assignable``).
    The doctor's row is locked and their role and ``active`` flag read again under
    the lock (422 ``doctor_id`` when they are no longer an active doctor), so the
    assignment cannot race with their deactivation. The timeline records whether
    the doctor was on duty in the visit's zone. Assigning the doctor who already
    has the visit changes nothing.
    """
    require_role(actor, MANAGE_ROLES)
    v = Validator()
    doctor: User | None = None
    if doctor_id is not None:
        if is_id(doctor_id):
            doctor = db.session.scalars(
                scoped(User, actor.circle_id).where(User.id == doctor_id)
            ).first()
        check_doctor(v, doctor)
        check_text(v, "reason", reason, MAX_UNASSIGN_REASON)
    else:
        check_text(v, "reason", reason, MAX_UNASSIGN_REASON, required=True)
    v.raise_if_any()

    hold_circle(actor.circle_id)
    visit = load_visit(actor, visit_id, lock=True)
    if doctor is not None:
        # Read the doctor again under their row lock: a deactivation (or a role
        # change) committed since the check above is refused, and one that starts
        # now waits for this transaction and then sees the visit as open.
        rows = lock_doctors(actor.circle_id, [doctor.id])
        doctor = rows[0] if rows else None
        v = Validator()
        check_doctor(v, doctor)
        v.raise_if_any()
    previous = visit.doctor_id
    if doctor is not None and previous == doctor.id and visit.status == "assigned":
        out = present_one(visit)
        db.session.commit()  # nothing changed; ends the transaction and its row lock
        return out

    if doctor is None:
        _move(
            visit,
            "unassigned",
            actor=actor,
            now=now,
            kind="visit.unassigned",
            code="visit_not_assignable",
            from_doctor_id=previous,
            reason=reason,
        )
        visit.doctor_id = None
        visit.assigned_at = None
        visit.unassigned_reason = reason
    else:
        was_on_duty = on_duty_now(actor.circle_id, visit.zone_id, doctor.id, now)
        _move(
            visit,
            "assigned",
            actor=actor,
            now=now,
            kind="visit.reassigned" if previous is not None else "visit.assigned",
            code="visit_not_assignable",
            from_doctor_id=previous,
            doctor_id=doctor.id,
            on_duty=was_on_duty,
            reason=reason,
        )
        visit.doctor_id = doctor.id
        visit.assigned_at = now
        visit.unassigned_reason = None

    out = present_one(visit)
    db.session.commit()
    logger.info("visit %s assignment: doctor %s -> %s", visit.id, previous, visit.doctor_id)
    return out


@atomic
def cancel_visit(actor: User, visit_id: int, reason: str | None, now: datetime) -> dict[str, Any]:
    """Cancel an unassigned or assigned visit; a reason is required.

    422 without a reason; 409 ``visit_not_cancellable`` from any other state.
    """
    require_role(actor, MANAGE_ROLES)
    v = Validator()
    check_text(v, "reason", reason, MAX_REASON, required=True)
    v.raise_if_any()

    visit = load_visit(actor, visit_id, lock=True)
    _move(
        visit,
        "cancelled",
        actor=actor,
        now=now,
        kind="visit.cancelled",
        code="visit_not_cancellable",
        reason=reason,
        doctor_id=visit.doctor_id,
    )
    visit.cancelled_at = now
    visit.cancel_reason = reason

    out = present_one(visit)
    db.session.commit()
    logger.info("visit %s cancelled", visit.id)
    return out


@atomic
def check_in(
    actor: User, visit_id: int, now: datetime, location: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The visit's own doctor arrives: ``assigned`` -> ``on_site``.

    Another doctor's visit is 404; any other state is 409 ``visit_not_checkinable``.
    """
    require_role(actor, ("doctor",))
    v = Validator()
    place = check_location(v, location)
    v.raise_if_any()

    visit = load_visit(actor, visit_id, lock=True)
    _move(
        visit,
        "on_site",
        actor=actor,
        now=now,
        kind="visit.checked_in",
        code="visit_not_checkinable",
        location=place,
    )
    visit.checked_in_at = now
    _store_location(visit, place, now)

    out = present_one(visit)
    db.session.commit()
    logger.info("visit %s: doctor %s checked in", visit.id, actor.id)
    return out


@atomic
def check_out(
    actor: User,
    visit_id: int,
    now: datetime,
    outcome_note: str | None = None,
    location: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The visit's own doctor leaves: ``on_site`` -> ``completed``.

    Another doctor's visit is 404; any other state is 409 ``visit_not_checkoutable``.
    """
    require_role(actor, ("doctor",))
    v = Validator()
    check_text(v, "note", outcome_note, MAX_NOTE)
    place = check_location(v, location)
    v.raise_if_any()

    visit = load_visit(actor, visit_id, lock=True)
    _move(
        visit,
        "completed",
        actor=actor,
        now=now,
        kind="visit.checked_out",
        code="visit_not_checkoutable",
        location=place,
        with_note=outcome_note is not None,
    )
    visit.checked_out_at = now
    visit.outcome_note = outcome_note
    _store_location(visit, place, now)

    out = present_one(visit)
    db.session.commit()
    logger.info("visit %s: doctor %s checked out", visit.id, actor.id)
    return out
