"""Visit use cases: creation from a call, assignment, cancellation, check-in/out, itinerary.

Every function is one transaction: it validates, writes the change, the timeline
events and the access-log rows, and commits once. On any error nothing is
committed. Results are returned as plain dictionaries, ready to serialise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import func, or_, select

from oncall.accounts.models import User
from oncall.calls.models import Call
from oncall.circles.models import Circle, Zone
from oncall.core.clock import LocalTimeError, parse_instant
from oncall.core.patient import (
    ADDRESS_FIELDS,
    CALLER_RELATIONS,
    DWELLINGS,
    PATIENT_FIELDS,
    PREPARATION_FIELDS,
)
from oncall.core.tenancy import scoped
from oncall.core.timeline import TimelineEvent, events_for, log_access, record
from oncall.errors import Conflict, Forbidden, NotFound, Validator
from oncall.extensions import db
from oncall.rota.models import Shift
from oncall.rota.services import on_duty
from oncall.visits.models import OPEN_STATES, STATES, TRANSITIONS, Visit

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: States in which a doctor is busy with a visit (the assignment rule counts them).
BUSY_STATES = ("assigned", "on_site")
#: Stable code stored in ``unassigned_reason`` when nobody is on duty in the zone.
NO_DOCTOR_ON_DUTY = "no_doctor_on_duty"

DISPATCH_ROLES = ("dispatcher", "admin")
MANAGE_ROLES = ("dispatcher", "coordinator", "admin")

MAX_INT = 2**31 - 1
MAX_BIGINT = 2**63 - 1
ETA_MINUTES = (1, 240)
#: How far ahead an arrival deadline may be set.
MAX_ARRIVAL_AHEAD = timedelta(hours=48)
MAX_REASON = 2000
MAX_NOTE = 4000
MAX_UNASSIGN_REASON = 200
MAX_LIST = 500
DEFAULT_LIST = 100
#: Default itinerary window when the doctor has no shift covering now.
ITINERARY_SPAN = timedelta(hours=12)

#: Maximum lengths of the patient, address and preparation text fields (the columns' sizes).
PATIENT_LIMITS = {"name": 160, "phone": 32, "usual_gp": 160}
ADDRESS_LIMITS = {
    "street": 160,
    "number": 16,
    "box": 16,
    "postcode": 12,
    "city": 80,
    "floor": 16,
    "access_notes": 2000,
}
MAX_AGE = 130
PREPARATION_FLAGS = tuple(f for f in PREPARATION_FIELDS if f != "caller_relation")


# --------------------------------------------------------------------------- helpers


def _atomic(fn: Callable[P, R]) -> Callable[P, R]:
    """Roll the session back (releasing row locks) when the use case fails."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except BaseException:
            db.session.rollback()
            raise

    return wrapper


def _require_role(actor: User, roles: Sequence[str]) -> None:
    if actor.role not in roles:
        raise Forbidden(f"This needs the role {' or '.join(sorted(roles))}.", code="role_forbidden")


def _is_id(value: Any, maximum: int = MAX_INT) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= maximum


def _visit_not_found(visit_id: int) -> NotFound:
    return NotFound(f"No visit {visit_id}.", code="visit_not_found")


def _locked(stmt: Any, *, key_share: bool = False) -> Any:
    """``SELECT ... FOR UPDATE`` (``FOR NO KEY UPDATE`` with ``key_share``) on PostgreSQL.

    A copy of the row already in the session is refreshed: the locked read is the
    one to trust.
    """
    return stmt.with_for_update(key_share=key_share).execution_options(populate_existing=True)


def _load_visit(actor: User, visit_id: int, *, lock: bool = False) -> Visit:
    """The visit if ``actor`` may see it (a doctor only their own), else NotFound."""
    if not _is_id(visit_id, MAX_BIGINT):
        raise _visit_not_found(visit_id)
    stmt: Any = scoped(Visit, actor.circle_id).where(Visit.id == visit_id)
    if actor.role == "doctor":
        stmt = stmt.where(Visit.doctor_id == actor.id)
    if lock:
        stmt = _locked(stmt)
    visit = db.session.scalars(stmt).first()
    if visit is None:
        raise _visit_not_found(visit_id)
    return visit


def _timezone(actor: User) -> str:
    circle = db.session.get(Circle, actor.circle_id)
    return circle.timezone if circle is not None and circle.timezone else "Europe/Brussels"


def _instant(v: Validator, field: str, value: Any, tz: str) -> datetime | None:
    """An input datetime as aware UTC (naive means circle local time); errors go to ``v``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        v.add(field, "Not a valid datetime.")
        return None
    try:
        return parse_instant(value, tz)
    except LocalTimeError as exc:
        v.add(field, str(exc))
    except (OverflowError, ValueError):
        v.add(field, "Out of the range of supported dates.")
    return None


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


def _check_text(
    v: Validator, field: str, value: Any, limit: int, *, required: bool = False
) -> None:
    if value is None:
        if required:
            v.add(field, "Missing data for required field.")
        return
    if not isinstance(value, str):
        v.add(field, "Not a valid string.")
    elif "\x00" in value or not _encodable(value):
        v.add(field, "Contains characters that cannot be stored.")
    elif required and not value.strip():
        v.add(field, "Must not be blank.")
    elif len(value) > limit:
        v.add(field, f"Longer than maximum length {limit}.")


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_bool(v: Validator, field: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        v.add(field, "Not a valid boolean.")


def _check_section(v: Validator, name: str, value: Any, allowed: Sequence[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        v.add(name, "Not a valid object.")
        return {}
    for key in value:
        if key not in allowed:
            v.add(f"{name}.{key}", "Unknown field.")
    return {k: value[k] for k in value if k in allowed}


def _check_patient(v: Validator, data: Mapping[str, Any], now: datetime) -> None:
    """Field checks of the nested patient, address and preparation objects."""
    patient = _check_section(v, "patient", data.get("patient"), PATIENT_FIELDS)
    for key, limit in PATIENT_LIMITS.items():
        _check_text(v, f"patient.{key}", patient.get(key), limit)
    age = patient.get("age")
    if age is not None and not (
        isinstance(age, int) and not isinstance(age, bool) and 0 <= age <= MAX_AGE
    ):
        v.add("patient.age", f"Must be a whole number from 0 to {MAX_AGE}.")
    birth = patient.get("birth_date")
    if birth is not None:
        if not isinstance(birth, date) or isinstance(birth, datetime):
            v.add("patient.birth_date", "Not a valid date.")
        elif birth > now.date():
            v.add("patient.birth_date", "Must not be in the future.")

    address = _check_section(v, "address", data.get("address"), ADDRESS_FIELDS)
    for key, limit in ADDRESS_LIMITS.items():
        _check_text(v, f"address.{key}", address.get(key), limit)
    dwelling = address.get("dwelling")
    if dwelling is not None and dwelling not in DWELLINGS:
        v.add("address.dwelling", f"Must be one of: {', '.join(DWELLINGS)}.")

    prep = _check_section(v, "preparation", data.get("preparation"), PREPARATION_FIELDS)
    relation = prep.get("caller_relation")
    if relation is not None and relation not in CALLER_RELATIONS:
        v.add("preparation.caller_relation", f"Must be one of: {', '.join(CALLER_RELATIONS)}.")
    for key in PREPARATION_FLAGS:
        _check_bool(v, f"preparation.{key}", prep.get(key))

    _check_text(v, "reason", data.get("reason"), MAX_REASON)
    if "identity_verified" in data and not isinstance(data["identity_verified"], bool):
        v.add("identity_verified", "Not a valid boolean.")


def _check_location(v: Validator, location: Any) -> dict[str, float | None] | None:
    """A ``{lat, lon, accuracy}`` object, checked; None when absent."""
    if location is None:
        return None
    if not isinstance(location, Mapping):
        v.add("location", "Not a valid object.")
        return None
    for key in location:
        if key not in ("lat", "lon", "accuracy"):
            v.add(f"location.{key}", "Unknown field.")
    out: dict[str, float | None] = {}
    for key, low, high, required in (
        ("lat", -90.0, 90.0, True),
        ("lon", -180.0, 180.0, True),
        ("accuracy", 0.0, 1_000_000.0, False),
    ):
        value = location.get(key)
        if value is None:
            if required:
                v.add(f"location.{key}", "Missing data for required field.")
            out[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            v.add(f"location.{key}", "Not a valid number.")
        elif not low <= value <= high:
            v.add(f"location.{key}", f"Must be between {low:g} and {high:g}.")
        else:
            out[key] = float(value)
    return out


def _store_location(
    visit: Visit, location: Mapping[str, float | None] | None, now: datetime
) -> None:
    if location is None:
        return
    visit.last_lat = location["lat"]
    visit.last_lon = location["lon"]
    visit.last_accuracy_m = location.get("accuracy")
    visit.last_location_at = now


def _doctor_names(ids: Sequence[int | None], circle_id: int) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = db.session.execute(
        select(User.id, User.name).where(User.circle_id == circle_id, User.id.in_(wanted))
    )
    return {row.id: row.name for row in rows}


def _present(
    visit: Visit, names: Mapping[int, str], timeline: Sequence[TimelineEvent] | None = None
) -> dict[str, Any]:
    """A visit as the API shows it."""
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
        "created_at": visit.created_at,
        "updated_at": visit.updated_at,
        "assigned_at": visit.assigned_at,
        "checked_in_at": visit.checked_in_at,
        "checked_out_at": visit.checked_out_at,
        "cancelled_at": visit.cancelled_at,
        "cancel_reason": visit.cancel_reason,
        "outcome_note": visit.outcome_note,
        "last_location": location,
    }
    if timeline is not None:
        out["timeline"] = [event.to_dict() for event in timeline]
    return out


def _present_one(visit: Visit, timeline: Sequence[TimelineEvent] | None = None) -> dict[str, Any]:
    return _present(visit, _doctor_names([visit.doctor_id], visit.circle_id), timeline)


def _present_many(visits: Sequence[Visit], circle_id: int) -> list[dict[str, Any]]:
    names = _doctor_names([v.doctor_id for v in visits], circle_id)
    return [_present(v, names) for v in visits]


def _pick_doctor(circle_id: int, zone_id: int, now: datetime) -> tuple[User | None, int]:
    """The doctor on duty in the zone with the fewest open visits, earliest shift, lowest id.

    Returns the doctor (or None) and how many doctors were on duty. The caller holds
    the zone lock, so the counts cannot go stale before the new visit is written.
    """
    first_start: dict[int, datetime] = {}
    for shift in on_duty(circle_id, zone_id, now):
        known = first_start.get(shift.doctor_id)
        if known is None or shift.starts_at < known:
            first_start[shift.doctor_id] = shift.starts_at
    if not first_start:
        return None, 0
    doctors = {
        u.id: u
        for u in db.session.scalars(
            select(User).where(
                User.circle_id == circle_id,
                User.id.in_(first_start),
                User.role == "doctor",
                User.active.is_(True),
            )
        )
    }
    if not doctors:
        return None, 0
    busy: dict[int | None, int] = {
        doctor_id: count
        for doctor_id, count in db.session.execute(
            select(Visit.doctor_id, func.count(Visit.id))
            .where(
                Visit.circle_id == circle_id,
                Visit.doctor_id.in_(doctors),
                Visit.status.in_(BUSY_STATES),
            )
            .group_by(Visit.doctor_id)
        )
    }
    best = min(doctors, key=lambda d: (busy.get(d, 0), first_start[d], d))
    return doctors[best], len(doctors)


def _on_duty_now(circle_id: int, zone_id: int, doctor_id: int, now: datetime) -> bool:
    return any(s.doctor_id == doctor_id for s in on_duty(circle_id, zone_id, now))


# --------------------------------------------------------------------------- use cases


@_atomic
def create_visit(actor: User, data: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Create a visit from a call of the circle and assign it to the doctor on duty.

    Copies patient, address and preparation from the call, then applies the given
    overrides. Assigns the doctor on duty in the zone at ``now`` with the fewest
    open visits (then earliest shift start, then lowest id), serialised per zone;
    with nobody on duty the visit stays ``unassigned`` (``no_doctor_on_duty``).
    Sets the call's outcome to ``home_visit`` when it had none. 422 on bad input,
    409 ``call_has_open_visit`` when the call already has an open visit.
    """
    _require_role(actor, DISPATCH_ROLES)
    v = Validator()
    tz = _timezone(actor)

    call: Call | None = None
    call_id = data.get("call_id")
    if call_id is None:
        v.add("call_id", "Missing data for required field.")
    elif not _is_id(call_id, MAX_BIGINT):
        v.add("call_id", "No such call in this circle.")
    else:
        call = db.session.scalars(
            _locked(scoped(Call, actor.circle_id).where(Call.id == call_id), key_share=True)
        ).first()
        if call is None:
            v.add("call_id", "No such call in this circle.")

    zone: Zone | None = None
    zone_id = data.get("zone_id")
    if zone_id is None:
        v.add("zone_id", "Missing data for required field.")
    elif not _is_id(zone_id):
        v.add("zone_id", "No such zone in this circle.")
    else:
        # The zone lock serialises assignment in this zone (see _pick_doctor).
        zone = db.session.scalars(
            _locked(scoped(Zone, actor.circle_id).where(Zone.id == zone_id), key_share=True)
        ).first()
        if zone is None:
            v.add("zone_id", "No such zone in this circle.")
        elif not zone.active:
            v.add("zone_id", "This zone is not active.")

    arrive_by: datetime | None = None
    has_arrive = data.get("arrive_by") is not None
    eta = data.get("eta_minutes")
    if has_arrive and eta is not None:
        v.add("arrive_by", "Give arrive_by or eta_minutes, not both.")
        v.add("eta_minutes", "Give arrive_by or eta_minutes, not both.")
    elif has_arrive:
        arrive_by = _instant(v, "arrive_by", data["arrive_by"], tz)
        if arrive_by is not None and arrive_by <= now:
            v.add("arrive_by", "Must be after now.")
        elif arrive_by is not None and arrive_by > now + MAX_ARRIVAL_AHEAD:
            v.add("arrive_by", "Must be within 48 hours from now.")
    elif eta is not None:
        low, high = ETA_MINUTES
        if isinstance(eta, bool) or not isinstance(eta, int) or not low <= eta <= high:
            v.add("eta_minutes", f"Must be a whole number from {low} to {high}.")
        else:
            arrive_by = now + timedelta(minutes=eta)

    _check_patient(v, data, now)
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
    visit.apply_patient(data.get("patient"), data.get("address"), data.get("preparation"))
    if "reason" in data:
        visit.reason = data["reason"]
    if "identity_verified" in data:
        visit.identity_verified = bool(data["identity_verified"])
    db.session.add(visit)
    db.session.flush()
    _event(
        visit, "visit.created", actor, now, call_id=call.id, zone_id=zone.id, arrive_by=arrive_by
    )

    doctor, on_duty_count = _pick_doctor(actor.circle_id, zone.id, now)
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

    out = _present_one(visit)
    db.session.commit()
    logger.info(
        "visit %s created from call %s in zone %s: %s", visit.id, call.id, zone.id, out["status"]
    )
    return out


@_atomic
def assign_visit(
    actor: User, visit_id: int, doctor_id: int | None, now: datetime, reason: str | None = None
) -> dict[str, Any]:
    """Assign the visit to an active doctor of the circle, or unassign it (``None``, with a reason).

    Allowed from ``unassigned`` and ``assigned`` only (else 409 ``visit_not_assignable``).
    The timeline records whether the doctor was on duty in the visit's zone. Assigning
    the doctor who already has the visit changes nothing.
    """
    _require_role(actor, MANAGE_ROLES)
    v = Validator()
    doctor: User | None = None
    if doctor_id is not None:
        if _is_id(doctor_id):
            doctor = db.session.scalars(
                scoped(User, actor.circle_id).where(User.id == doctor_id)
            ).first()
        if doctor is None or doctor.role != "doctor":
            v.add("doctor_id", "No such doctor in this circle.")
        elif not doctor.active:
            v.add("doctor_id", "This doctor is not active.")
        _check_text(v, "reason", reason, MAX_UNASSIGN_REASON)
    else:
        _check_text(v, "reason", reason, MAX_UNASSIGN_REASON, required=True)
    v.raise_if_any()

    visit = _load_visit(actor, visit_id, lock=True)
    previous = visit.doctor_id
    if doctor is not None and previous == doctor.id and visit.status == "assigned":
        out = _present_one(visit)
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
        was_on_duty = _on_duty_now(actor.circle_id, visit.zone_id, doctor.id, now)
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

    out = _present_one(visit)
    db.session.commit()
    logger.info("visit %s assignment: doctor %s -> %s", visit.id, previous, visit.doctor_id)
    return out


@_atomic
def cancel_visit(actor: User, visit_id: int, reason: str | None, now: datetime) -> dict[str, Any]:
    """Cancel an unassigned or assigned visit; a reason is required.

    422 without a reason; 409 ``visit_not_cancellable`` from any other state.
    """
    _require_role(actor, MANAGE_ROLES)
    v = Validator()
    _check_text(v, "reason", reason, MAX_REASON, required=True)
    v.raise_if_any()

    visit = _load_visit(actor, visit_id, lock=True)
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

    out = _present_one(visit)
    db.session.commit()
    logger.info("visit %s cancelled", visit.id)
    return out


@_atomic
def check_in(
    actor: User, visit_id: int, now: datetime, location: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The visit's own doctor arrives: ``assigned`` -> ``on_site``.

    Another doctor's visit is 404; any other state is 409 ``visit_not_checkinable``.
    """
    _require_role(actor, ("doctor",))
    v = Validator()
    place = _check_location(v, location)
    v.raise_if_any()

    visit = _load_visit(actor, visit_id, lock=True)
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

    out = _present_one(visit)
    db.session.commit()
    logger.info("visit %s: doctor %s checked in", visit.id, actor.id)
    return out


@_atomic
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
    _require_role(actor, ("doctor",))
    v = Validator()
    _check_text(v, "note", outcome_note, MAX_NOTE)
    place = _check_location(v, location)
    v.raise_if_any()

    visit = _load_visit(actor, visit_id, lock=True)
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

    out = _present_one(visit)
    db.session.commit()
    logger.info("visit %s: doctor %s checked out", visit.id, actor.id)
    return out


def ensure_visible(actor: User, visit_id: int) -> None:
    """Raise NotFound unless ``actor`` may see the visit (a doctor only their own). Reads only.

    Views of a visit's actions call it before parsing the body, so that another
    circle's visit answers 404 whatever the body holds.
    """
    if not _is_id(visit_id, MAX_BIGINT):
        raise _visit_not_found(visit_id)
    stmt = select(Visit.id).where(Visit.circle_id == actor.circle_id, Visit.id == visit_id)
    if actor.role == "doctor":
        stmt = stmt.where(Visit.doctor_id == actor.id)
    if db.session.scalar(stmt) is None:
        raise _visit_not_found(visit_id)


@_atomic
def get_visit(actor: User, visit_id: int, now: datetime) -> dict[str, Any]:
    """One visit with its timeline (a doctor only their own, else 404); logs the read."""
    visit = _load_visit(actor, visit_id)
    timeline = events_for("visit", visit.id, actor.circle_id)
    out = _present_one(visit, timeline)
    log_access(actor.circle_id, actor.id, "visit", visit.id, now, action="read")
    db.session.commit()
    return out


def visit_timeline(actor: User, visit_id: int) -> list[dict[str, Any]]:
    """The visit's timeline events, oldest first (a doctor only their own visit, else 404)."""
    visit = _load_visit(actor, visit_id)
    return [event.to_dict() for event in events_for("visit", visit.id, actor.circle_id)]


@_atomic
def list_visits(
    actor: User,
    doctor_id: int | None = None,
    zone_id: int | None = None,
    status: str | Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = DEFAULT_LIST,
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """Visits of the circle created in ``[start, end)``, newest first; a doctor sees only their own.

    ``status`` is one state or several. Every visit returned is written to the access log.
    """
    v = Validator()
    tz = _timezone(actor)
    if doctor_id is not None and not _is_id(doctor_id):
        v.add("doctor_id", "Not a valid id.")
    if zone_id is not None and not _is_id(zone_id):
        v.add("zone_id", "Not a valid id.")
    states = [status] if isinstance(status, str) else list(status or [])
    for state in states:
        if state not in STATES:
            v.add("status", f"Must be one of: {', '.join(STATES)}.")
            break
    begin = _instant(v, "start", start, tz)
    until = _instant(v, "end", end, tz)
    if begin is not None and until is not None and until <= begin:
        v.add("end", "Must be after start.")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        v.add("limit", f"Must be a whole number from 1 to {MAX_LIST}.")
    v.raise_if_any()

    stmt = scoped(Visit, actor.circle_id)
    if actor.role == "doctor":
        stmt = stmt.where(Visit.doctor_id == actor.id)
    if doctor_id is not None:
        stmt = stmt.where(Visit.doctor_id == doctor_id)
    if zone_id is not None:
        stmt = stmt.where(Visit.zone_id == zone_id)
    if states:
        stmt = stmt.where(Visit.status.in_(states))
    if begin is not None:
        stmt = stmt.where(Visit.created_at >= begin)
    if until is not None:
        stmt = stmt.where(Visit.created_at < until)
    visits = list(
        db.session.scalars(stmt.order_by(Visit.created_at.desc(), Visit.id.desc()).limit(limit))
    )
    out = _present_many(visits, actor.circle_id)
    for visit in visits:
        log_access(actor.circle_id, actor.id, "visit", visit.id, now, action="list")
    db.session.commit()
    return out


@_atomic
def itinerary(
    actor: User,
    doctor_id: int,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """A doctor's visits in chronological order over a window (default: the current shift).

    The default window runs from the start of the doctor's shift covering ``now``
    (or ``now`` - 12 h without one) to ``now`` + 12 h. When the window contains
    ``now`` the doctor's open visits are always included. Visits are ordered by
    check-in time, else ``arrive_by``, else creation. A doctor may read only their
    own itinerary (another is 404). Every visit returned is written to the access log.
    """
    not_found = NotFound(f"No doctor {doctor_id}.", code="doctor_not_found")
    if not _is_id(doctor_id) or (actor.role == "doctor" and doctor_id != actor.id):
        raise not_found
    doctor = db.session.scalars(
        scoped(User, actor.circle_id).where(User.id == doctor_id, User.role == "doctor")
    ).first()
    if doctor is None:
        raise not_found

    v = Validator()
    tz = _timezone(actor)
    begin = _instant(v, "start", start, tz)
    until = _instant(v, "end", end, tz)
    v.raise_if_any()

    shift = db.session.scalars(
        scoped(Shift, actor.circle_id)
        .where(Shift.doctor_id == doctor.id, Shift.starts_at <= now, Shift.ends_at > now)
        .order_by(Shift.starts_at, Shift.id)
        .limit(1)
    ).first()
    if begin is None:
        begin = shift.starts_at if shift is not None else now - ITINERARY_SPAN
    if until is None:
        until = now + ITINERARY_SPAN
    if until <= begin:
        if end is not None:
            v.add("end", "Must be after start.")
        else:
            v.add("start", "Must be before the end of the window (now + 12 h).")
        v.raise_if_any()

    when = func.coalesce(Visit.checked_in_at, Visit.arrive_by, Visit.created_at)
    in_window = (when >= begin) & (when < until)
    condition = or_(in_window, Visit.status.in_(BUSY_STATES)) if begin <= now < until else in_window
    visits = list(
        db.session.scalars(
            scoped(Visit, actor.circle_id)
            .where(Visit.doctor_id == doctor.id, condition)
            .order_by(when, Visit.created_at, Visit.id)
        )
    )
    names = {doctor.id: doctor.name}
    out = {
        "doctor_id": doctor.id,
        "doctor_name": doctor.name,
        "start": begin,
        "end": until,
        "shift": None
        if shift is None
        else {
            "id": shift.id,
            "zone_id": shift.zone_id,
            "starts_at": shift.starts_at,
            "ends_at": shift.ends_at,
        },
        "visits": [_present(visit, names) for visit in visits],
    }
    for visit in visits:
        log_access(actor.circle_id, actor.id, "visit", visit.id, now, action="itinerary")
    db.session.commit()
    return out
