"""Visit use cases: creation from a call, assignment, cancellation, check-in/out, itinerary.

Every function is one transaction: it validates, writes the change, its
deadlines, the timeline events and the access-log rows, and commits once. On any
error nothing is committed. Results are returned as plain dictionaries, ready to
serialise.

This module holds the dispatcher's changes; the doctor's (check-in, extension,
check-out) are in :mod:`oncall.visits.onsite` and the reads (one visit, the list,
the itinerary) in :mod:`oncall.visits.queries`; both are offered here too, so that
callers need only this module. Input checks are in :mod:`oncall.visits.checks`,
the output shapes in :mod:`oncall.visits.present`, the assignment rule and the
lock order in :mod:`oncall.visits.assignment`, the deadlines and alerts in
:mod:`oncall.visits.safety`.
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
    MAX_REASON,
    MAX_UNASSIGN_REASON,
    check_arrival,
    check_doctor,
    check_patient,
    check_text,
    is_id,
)
from oncall.visits.common import (
    DISPATCH_ROLES,
    MANAGE_ROLES,
    atomic,
    circle_settings,
    circle_timezone,
    event,
    load_visit,
    locked,
    move,
    require_role,
)
from oncall.visits.models import OPEN_STATES, Visit
from oncall.visits.onsite import check_in, check_out, extend_visit
from oncall.visits.present import present_one
from oncall.visits.queries import ensure_visible, get_visit, itinerary, list_visits, visit_timeline
from oncall.visits.safety import arm_arrival, cancel_deadlines, default_arrival

__all__ = [
    "assign_visit",
    "cancel_visit",
    "check_in",
    "check_out",
    "create_visit",
    "ensure_visible",
    "extend_visit",
    "get_visit",
    "itinerary",
    "list_visits",
    "visit_timeline",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- use cases


@atomic
def create_visit(actor: User, data: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Create a visit from a call of the circle and assign it to the doctor on duty.

    Copies patient, address and preparation from the call, then applies the given
    overrides. Assigns the doctor on duty in the zone at ``now`` with the fewest
    open visits (then earliest shift start, then lowest id), serialised per zone and
    per doctor (a doctor on duty in two zones counts every visit given to them);
    with nobody on duty the visit stays ``unassigned`` (``no_doctor_on_duty``).
    Sets the call's outcome to ``home_visit`` when it had none. An assigned visit's
    arrival deadline is armed for the dispatcher's ``arrive_by`` (or ``eta_minutes``)
    or else the circle's ``arrival_minutes`` from now, and becomes its ``arrive_by``;
    an unassigned visit has none until it is assigned. 422 on bad input, 409
    ``call_has_open_visit`` when the call already has an open visit.
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
    event(
        visit, "visit.created", actor, now, call_id=call.id, zone_id=zone.id, arrive_by=arrive_by
    )

    doctor, on_duty_count = pick_doctor(actor.circle_id, zone.id, now)
    if doctor is not None:
        visit.doctor_id = doctor.id
        visit.assigned_at = now
        move(
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
        due = arrive_by or default_arrival(circle_settings(actor.circle_id), now)
        arm_arrival(visit, due, now, actor)
    else:
        visit.unassigned_reason = NO_DOCTOR_ON_DUTY
        event(
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
    actor: User,
    visit_id: int,
    doctor_id: int | None,
    now: datetime,
    reason: str | None = None,
    arrive_by: datetime | None = None,
) -> dict[str, Any]:
    """Assign the visit to an active doctor of the circle, or unassign it (``None``, with a reason).

    Allowed from ``unassigned`` and ``assigned`` only (else 409 ``visit_not_assignable``).
    The doctor's row is locked and their role and ``active`` flag read again under
    the lock (422 ``doctor_id`` when they are no longer an active doctor), so the
    assignment cannot race with their deactivation. The timeline records whether
    the doctor was on duty in the visit's zone.

    The new doctor's arrival deadline is armed for ``arrive_by`` (naive: the
    circle's local time; within 48 h) or else the circle's ``arrival_minutes`` from
    now; unassigning cancels it. Assigning the doctor who already has the visit
    changes nothing, unless ``arrive_by`` is given: then their deadline moves to it.
    """
    require_role(actor, MANAGE_ROLES)
    v = Validator()
    doctor: User | None = None
    due: datetime | None = None
    if doctor_id is not None:
        if is_id(doctor_id):
            doctor = db.session.scalars(
                scoped(User, actor.circle_id).where(User.id == doctor_id)
            ).first()
        check_doctor(v, doctor)
        check_text(v, "reason", reason, MAX_UNASSIGN_REASON)
        due = check_arrival(v, {"arrive_by": arrive_by}, now, circle_timezone(actor))
    else:
        check_text(v, "reason", reason, MAX_UNASSIGN_REASON, required=True)
        if arrive_by is not None:
            v.add("arrive_by", "Only with a doctor to assign.")
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
        if due is not None:
            visit.updated_at = now
            arm_arrival(visit, due, now, actor)
        out = present_one(visit)
        db.session.commit()  # ends the transaction and its row lock
        return out

    if doctor is None:
        move(
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
        cancel_deadlines(visit, now, actor, ("arrival",))
    else:
        was_on_duty = on_duty_now(actor.circle_id, visit.zone_id, doctor.id, now)
        move(
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
        arm_arrival(visit, due or default_arrival(circle_settings(actor.circle_id), now), now,
                    actor)

    out = present_one(visit)
    db.session.commit()
    logger.info("visit %s assignment: doctor %s -> %s", visit.id, previous, visit.doctor_id)
    return out


@atomic
def cancel_visit(actor: User, visit_id: int, reason: str | None, now: datetime) -> dict[str, Any]:
    """Cancel an unassigned or assigned visit; a reason is required.

    Its armed deadlines are cancelled. 422 without a reason; 409
    ``visit_not_cancellable`` from any other state.
    """
    require_role(actor, MANAGE_ROLES)
    v = Validator()
    check_text(v, "reason", reason, MAX_REASON, required=True)
    v.raise_if_any()

    visit = load_visit(actor, visit_id, lock=True)
    move(
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
    cancel_deadlines(visit, now, actor)

    out = present_one(visit)
    db.session.commit()
    logger.info("visit %s cancelled", visit.id)
    return out
