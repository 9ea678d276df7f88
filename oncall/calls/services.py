"""Call-log use cases: telephone-system events, calls logged by hand, caller history.

Each public function is one transaction: it validates everything first, writes
the change with its timeline events and access-log rows, and commits once.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from oncall.accounts.models import User
from oncall.calls.models import OUTCOMES, TELEPHONY_EVENTS, Call, Caller, TelephonyEvent
from oncall.calls.numbers import InvalidNumber, is_withheld, normalise_number, try_normalise
from oncall.circles.models import Circle
from oncall.core.clock import LocalTimeError, parse_instant, to_local
from oncall.core.patient import PREPARATION_FIELDS
from oncall.core.tenancy import get_in_circle, scoped
from oncall.core.timeline import log_access, record
from oncall.errors import Forbidden, NotFound, Validator
from oncall.extensions import db
from oncall.visits.models import Visit

logger = logging.getLogger(__name__)

#: Roles that may read the call log; roles that may write it.
READ_ROLES = frozenset({"dispatcher", "coordinator", "admin"})
WRITE_ROLES = frozenset({"dispatcher", "admin"})
MAX_PAGE_SIZE = 200
#: Most recent calls shown in a caller's history.
HISTORY_LIMIT = 200
#: Agent fields may name users of these roles as the answering dispatcher.
AGENT_ROLES = ("dispatcher", "admin")

_STATE_RANK = {"ringing": 0, "answered": 1, "ended": 2}
_POSTCODES = {
    "BE": (re.compile(r"^\d{4}$"), "4 digits"),
    "FR": (re.compile(r"^\d{5}$"), "5 digits"),
}
_OTHER_POSTCODE = (re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{1,9}$"), "2 to 10 letters or digits")
_MAX_ROW_ID = 2**63 - 1
#: How far in the future an event or call time may lie (clocks drift).
_FUTURE_TOLERANCE = timedelta(minutes=10)
#: How old a telephone-system event may be and still be recorded.
_EVENT_MAX_AGE = timedelta(days=7)


# --- helpers -----------------------------------------------------------------


def _check_role(actor: User, roles: Iterable[str]) -> None:
    allowed = frozenset(roles)
    if actor.role not in allowed:
        raise Forbidden(
            f"This needs the role {' or '.join(sorted(allowed))}.", code="role_forbidden"
        )


def _circle_of(actor: User) -> Circle:
    circle = db.session.get(Circle, actor.circle_id)
    if circle is None:  # pragma: no cover - a user always belongs to a circle
        raise NotFound("No such circle.", code="circle_not_found")
    return circle


def _insert(model: type[Any]) -> Any:
    """An INSERT that supports ``ON CONFLICT DO NOTHING`` on this database."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise RuntimeError(f"unsupported database dialect {dialect}")  # pragma: no cover


def _instant(value: datetime | None, tz: str, field: str, v: Validator) -> datetime | None:
    """An input datetime as UTC (naive means the circle's local time); errors go to ``v``."""
    if value is None:
        return None
    try:
        return parse_instant(value, tz)
    except LocalTimeError as exc:
        v.add(field, str(exc))
    except (OverflowError, ValueError):
        v.add(field, "Is out of range.")
    return None


def _local_today(circle: Circle, now: datetime) -> date:
    return to_local(now, circle.timezone).date()


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _number_error(exc: InvalidNumber) -> str:
    return f"This phone number {exc.reason}."


def _validate_details(
    data: Mapping[str, Any],
    circle: Circle,
    now: datetime,
    v: Validator,
    current: Call | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Check the nested patient, address and preparation input; return cleaned copies."""
    patient = dict(data.get("patient") or {})
    address = dict(data.get("address") or {})
    prep = {k: val for k, val in (data.get("preparation") or {}).items() if k in PREPARATION_FIELDS}
    today = _local_today(circle, now)

    birth_ok = True
    birth = patient.get("birth_date")
    if birth is not None:
        if birth > today:
            birth_ok = v.check(False, "patient.birth_date", "Must not be in the future.")
        elif birth.year < today.year - 130:
            birth_ok = v.check(False, "patient.birth_date", "Is more than 130 years ago.")
    if "phone" in patient:
        phone = _blank_to_none(patient["phone"])
        if phone is not None:
            try:
                phone = normalise_number(phone, circle.country)
            except InvalidNumber as exc:
                v.add("patient.phone", _number_error(exc))
        patient["phone"] = phone

    # Age and birth date, as they will be after this change, must agree.
    age = patient.get("age", current.patient_age if current else None)
    birth_after = patient.get("birth_date", current.patient_birth_date if current else None)
    if (
        birth_ok
        and age is not None
        and birth_after is not None
        and _age_on(birth_after, today) != age
    ):
        for name in ("age", "birth_date"):
            if name in patient:
                v.add(f"patient.{name}", "Age and birth date disagree.")

    if "postcode" in address:
        postcode = _blank_to_none(address["postcode"])
        if postcode is not None:
            postcode = postcode.strip()
            pattern, words = _POSTCODES.get(circle.country.upper(), _OTHER_POSTCODE)
            v.check(bool(pattern.match(postcode)), "address.postcode", f"Must be {words}.")
        address["postcode"] = postcode
    return patient, address, prep


def find_or_create_caller(
    circle_id: int, number: str, seen_at: datetime, name: str | None = None
) -> Caller:
    """The circle's caller for an E.164 ``number``, created if new; safe when two requests race.

    ``last_seen_at`` only moves forward; ``name``, when given, replaces the known name.
    The row is locked until the transaction ends. The caller commits.
    """
    db.session.execute(
        _insert(Caller)
        .values(
            circle_id=circle_id,
            number=number,
            name=name,
            first_seen_at=seen_at,
            last_seen_at=seen_at,
        )
        .on_conflict_do_nothing(index_elements=["circle_id", "number"])
    )
    caller: Caller = db.session.scalars(
        select(Caller)
        .where(Caller.circle_id == circle_id, Caller.number == number)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if caller.last_seen_at < seen_at:
        caller.last_seen_at = seen_at
    if caller.first_seen_at > seen_at:
        caller.first_seen_at = seen_at
    if name:
        caller.name = name
    return caller


def _visit_ids(circle_id: int, call_ids: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    if not call_ids:
        return out
    rows = db.session.execute(
        select(Visit.call_id, Visit.id)
        .where(Visit.circle_id == circle_id, Visit.call_id.in_(call_ids))
        .order_by(Visit.id)
    )
    for call_id, visit_id in rows:
        out[call_id].append(visit_id)
    return out


def serialise_call(call: Call, visit_ids: list[int]) -> dict[str, Any]:
    """The API form of a call (nested patient, address and preparation)."""
    return {
        "id": call.id,
        "call_ref": call.call_ref,
        "state": call.state,
        "caller_number": call.caller_number,
        "caller_name": call.caller_name,
        "line": call.line,
        "recording_ref": call.recording_ref,
        "ringing_at": call.ringing_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "dispatcher_id": call.dispatcher_id,
        "patient": call.patient_dict(),
        "address": call.address_dict(),
        "preparation": call.preparation_dict(),
        "reason": call.reason,
        "identity_verified": bool(call.identity_verified),
        "identity_verified_at": call.identity_verified_at,
        "outcome": call.outcome,
        "note": call.note,
        "created_at": call.created_at,
        "updated_at": call.updated_at,
        "visit_ids": list(visit_ids),
    }


def _serialise_visit(visit: Visit) -> dict[str, Any]:
    return {
        "id": visit.id,
        "call_id": visit.call_id,
        "status": visit.status,
        "zone_id": visit.zone_id,
        "doctor_id": visit.doctor_id,
        "reason": visit.reason,
        "created_at": visit.created_at,
        "checked_in_at": visit.checked_in_at,
        "checked_out_at": visit.checked_out_at,
        "cancelled_at": visit.cancelled_at,
        "patient": visit.patient_dict(),
        "address": visit.address_dict(),
    }


def _check_id(call_id: int) -> None:
    if not 0 < call_id <= _MAX_ROW_ID:
        raise NotFound(f"No call {call_id}.", code="call_not_found")


# --- the telephone system ------------------------------------------------------


def _match_agent(circle_id: int, agent: str | None) -> int | None:
    """The id of the circle's dispatcher (or admin) named by ``agent`` (email or id)."""
    text = (agent or "").strip()
    if not text:
        return None
    stmt = scoped(User, circle_id).where(User.role.in_(AGENT_ROLES), User.active.is_(True))
    if text.isascii() and text.isdigit():
        if int(text) > _MAX_ROW_ID:
            return None
        stmt = stmt.where(User.id == int(text))
    else:
        stmt = stmt.where(func.lower(User.email) == text.lower())
    user = db.session.scalars(stmt).first()
    return user.id if user else None


def record_telephony_event(circle: Circle, payload: Mapping[str, Any], now: datetime) -> Call:
    """Record one ringing / answered / ended event and return its call.

    The first event seen for a ``call_ref`` creates the call, whatever its kind
    (events may arrive out of order). State only moves forward (ringing, answered,
    ended); a late event only fills its own timestamp. The same event twice (a
    replay, a retry, two deliveries at once) changes nothing and returns the same
    call. A withheld or unreadable number gives a call without a caller.
    """
    circle_id = circle.id
    tz = circle.timezone
    country = circle.country
    v = Validator()
    call_ref = payload.get("call_ref")
    event = payload.get("event")
    v.check(isinstance(call_ref, str) and 0 < len(call_ref) <= 120, "call_ref", "Is required.")
    v.check(event in TELEPHONY_EVENTS, "event", f"Must be one of {', '.join(TELEPHONY_EVENTS)}.")
    occurred_at = _instant(payload.get("occurred_at"), tz, "occurred_at", v)
    if (
        occurred_at is not None
        and not now - _EVENT_MAX_AGE <= occurred_at <= now + _FUTURE_TOLERANCE
    ):
        v.add("occurred_at", "Is too far from the current time.")
    v.raise_if_any("The telephony event is not valid.")
    assert isinstance(call_ref, str)
    assert isinstance(event, str)
    occurred = occurred_at or now

    raw_number = payload.get("caller_number")
    withheld = is_withheld(raw_number)
    number = None if withheld else try_normalise(raw_number, country)
    if not withheld and number is None:
        logger.warning("telephony: unreadable caller number on an event for circle %s", circle_id)
    line = _blank_to_none(payload.get("line"))
    recording_ref = _blank_to_none(payload.get("recording_ref"))

    # 1. The call: created by whichever event comes first, then locked.
    # RETURNING tells whether this statement inserted (rowcount is not reliable here).
    new_call_id = db.session.execute(
        _insert(Call)
        .values(
            circle_id=circle_id,
            call_ref=call_ref,
            state=event,
            identity_verified=False,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["circle_id", "call_ref"])
        .returning(Call.id)
    ).scalar_one_or_none()
    created = new_call_id is not None
    call_query = (
        select(Call)
        .where(Call.circle_id == circle_id, Call.call_ref == call_ref)
        .execution_options(populate_existing=True)
    )
    call: Call = db.session.scalars(call_query.with_for_update()).one()

    # 2. The raw event; the unique key turns a duplicate into a no-op.
    stored_number = number or (None if withheld else str(raw_number).strip()[:20])
    event_id = db.session.execute(
        _insert(TelephonyEvent)
        .values(
            circle_id=circle_id,
            call_id=call.id,
            call_ref=call_ref,
            event=event,
            caller_number=stored_number,
            line=line,
            recording_ref=recording_ref,
            occurred_at=occurred,
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["circle_id", "call_ref", "event"])
        .returning(TelephonyEvent.id)
    ).scalar_one_or_none()
    if event_id is None:
        db.session.rollback()
        logger.info("telephony: duplicate %s event for call %s ignored", event, call.id)
        return db.session.scalars(call_query).one()

    # 3. Move the call forward, never back.
    before = None if created else call.state
    stamp = f"{event}_at"
    if getattr(call, stamp) is None:
        setattr(call, stamp, occurred)
    if created or _STATE_RANK[event] > _STATE_RANK[call.state]:
        call.state = event
    if line and not call.line:
        call.line = line
    if recording_ref and not call.recording_ref:
        call.recording_ref = recording_ref
    if number and call.caller_id is None:
        caller = find_or_create_caller(circle_id, number, occurred)
        call.caller_id = caller.id
        call.caller_number = number
        if caller.name and not call.caller_name:
            call.caller_name = caller.name
    agent_matched = None
    if event == "answered" and payload.get("agent") and call.dispatcher_id is None:
        call.dispatcher_id = _match_agent(circle_id, payload.get("agent"))
        agent_matched = call.dispatcher_id is not None
    call.updated_at = now

    if created:
        record(circle_id, "call", call.id, "call.created", now, source="telephony")
    details: dict[str, Any] = {"occurred_at": occurred, "state_before": before, "state": call.state}
    if agent_matched is not None:
        details["agent_matched"] = agent_matched
    record(circle_id, "call", call.id, f"call.{event}", now, **details)
    db.session.commit()
    logger.info("telephony: %s event recorded for call %s (circle %s)", event, call.id, circle_id)
    return call


# --- calls logged and edited by dispatchers -------------------------------------


def create_call(actor: User, data: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Log a call by hand for ``actor``'s circle; the caller is found or created by number."""
    _check_role(actor, WRITE_ROLES)
    circle = _circle_of(actor)
    v = Validator()
    number = None
    raw_number = _blank_to_none(data.get("caller_number"))
    if raw_number is not None:
        try:
            number = normalise_number(raw_number, circle.country)
        except InvalidNumber as exc:
            v.add("caller_number", _number_error(exc))
    patient, address, prep = _validate_details(data, circle, now, v)
    answered_at = _instant(data.get("answered_at"), circle.timezone, "answered_at", v)
    ended_at = _instant(data.get("ended_at"), circle.timezone, "ended_at", v)
    for name, value in (("answered_at", answered_at), ("ended_at", ended_at)):
        if value is not None and value > now + _FUTURE_TOLERANCE:
            v.add(name, "Must not be in the future.")
    answered = answered_at or now
    if ended_at is not None and ended_at < answered:
        v.add("ended_at", "Must not be before the call was answered.")
    v.raise_if_any()

    verified = bool(data.get("identity_verified"))
    caller_name = _blank_to_none(data.get("caller_name"))
    call = Call(
        circle_id=circle.id,
        call_ref=None,
        state="ended" if ended_at else "answered",
        line=_blank_to_none(data.get("line")),
        answered_at=answered,
        ended_at=ended_at,
        dispatcher_id=actor.id,
        caller_name=caller_name,
        reason=data.get("reason"),
        identity_verified=verified,
        identity_verified_at=now if verified else None,
        outcome=data.get("outcome"),
        note=data.get("note"),
        created_at=now,
        updated_at=now,
    )
    call.apply_patient(patient, address, prep)
    if number:
        caller = find_or_create_caller(circle.id, number, answered, caller_name)
        call.caller_id = caller.id
        call.caller_number = number
        if not caller_name and caller.name:
            call.caller_name = caller.name
    db.session.add(call)
    db.session.flush()
    record(circle.id, "call", call.id, "call.created", now, actor.id, source="manual")
    if call.outcome:
        record(
            circle.id,
            "call",
            call.id,
            "call.outcome_set",
            now,
            actor.id,
            old=None,
            new=call.outcome,
        )
    if verified:
        record(circle.id, "call", call.id, "call.identity_verified", now, actor.id)
    db.session.commit()
    logger.info("call %s logged by hand by user %s", call.id, actor.id)
    return serialise_call(call, [])


def update_call(
    actor: User, call_id: int, data: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """Change the fields sent on a call; an outcome change records the old and new value."""
    _check_role(actor, WRITE_ROLES)
    _check_id(call_id)
    call = get_in_circle(Call, call_id, actor.circle_id, what="call", lock=True)
    circle = _circle_of(actor)
    v = Validator()
    patient, address, prep = _validate_details(data, circle, now, v, current=call)
    v.raise_if_any()

    changed: set[str] = set()

    def put(attr: str, value: Any, label: str) -> None:
        if getattr(call, attr) != value:
            setattr(call, attr, value)
            changed.add(label)

    for name, value in patient.items():
        put(f"patient_{name}", value, f"patient.{name}")
    for name, value in address.items():
        put(f"address_{name}", value, f"address.{name}")
    for name, value in prep.items():
        put(name, value, f"preparation.{name}")
    for name in ("reason", "note"):
        if name in data:
            put(name, data[name], name)
    if "caller_name" in data:
        caller_name = _blank_to_none(data["caller_name"])
        put("caller_name", caller_name, "caller_name")
        if caller_name and call.caller_id is not None:
            caller = db.session.get(Caller, call.caller_id)
            if caller is not None:
                caller.name = caller_name
    if "identity_verified" in data:
        verified = bool(data["identity_verified"])
        if verified and not call.identity_verified:
            call.identity_verified = True
            call.identity_verified_at = now
            changed.add("identity_verified")
            record(call.circle_id, "call", call.id, "call.identity_verified", now, actor.id)
        elif not verified and call.identity_verified:
            call.identity_verified = False
            call.identity_verified_at = None
            changed.add("identity_verified")
            record(call.circle_id, "call", call.id, "call.identity_unverified", now, actor.id)
    if "outcome" in data and data["outcome"] != call.outcome:
        old = call.outcome
        call.outcome = data["outcome"]
        changed.add("outcome")
        kind = "call.outcome_set" if old is None else "call.outcome_changed"
        record(call.circle_id, "call", call.id, kind, now, actor.id, old=old, new=call.outcome)

    if changed:
        call.updated_at = now
        record(
            call.circle_id, "call", call.id, "call.updated", now, actor.id, fields=sorted(changed)
        )
    log_access(call.circle_id, actor.id, "call", call.id, now, action="update")
    visit_ids = _visit_ids(call.circle_id, [call.id])[call.id]
    db.session.commit()
    return serialise_call(call, visit_ids)


def get_call(actor: User, call_id: int, now: datetime) -> dict[str, Any]:
    """One call of the actor's circle; the read is written to the access log."""
    _check_role(actor, READ_ROLES)
    _check_id(call_id)
    call = get_in_circle(Call, call_id, actor.circle_id, what="call")
    visit_ids = _visit_ids(call.circle_id, [call.id])[call.id]
    log_access(call.circle_id, actor.id, "call", call.id, now, action="read")
    db.session.commit()
    return serialise_call(call, visit_ids)


def list_calls(
    actor: User,
    now: datetime,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    number: str | None = None,
    outcome: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of the circle's calls, newest first, filtered by period, number and outcome.

    ``start`` is inclusive, ``end`` exclusive; naive values are the circle's local
    time. The list is written to the access log (it shows patient names).
    """
    _check_role(actor, READ_ROLES)
    circle = _circle_of(actor)
    v = Validator()
    start_utc = _instant(start, circle.timezone, "start", v)
    end_utc = _instant(end, circle.timezone, "end", v)
    if start_utc and end_utc and end_utc <= start_utc:
        v.add("end", "Must be after start.")
    wanted = None
    if number is not None:
        try:
            wanted = normalise_number(number, circle.country)
        except InvalidNumber as exc:
            v.add("number", _number_error(exc))
    if outcome is not None and outcome not in OUTCOMES:
        v.add("outcome", f"Must be one of {', '.join(OUTCOMES)}.")
    v.check(1 <= limit <= MAX_PAGE_SIZE, "limit", f"Must be between 1 and {MAX_PAGE_SIZE}.")
    v.check(offset >= 0, "offset", "Must not be negative.")
    v.raise_if_any()

    stmt = scoped(Call, circle.id)
    if start_utc:
        stmt = stmt.where(Call.created_at >= start_utc)
    if end_utc:
        stmt = stmt.where(Call.created_at < end_utc)
    if wanted:
        stmt = stmt.where(Call.caller_number == wanted)
    if outcome:
        stmt = stmt.where(Call.outcome == outcome)
    stmt = stmt.order_by(Call.created_at.desc(), Call.id.desc()).offset(offset).limit(limit + 1)
    calls = list(db.session.scalars(stmt))
    more = len(calls) > limit
    calls = calls[:limit]
    visits = _visit_ids(circle.id, [c.id for c in calls])
    log_access(circle.id, actor.id, "call", None, now, action="list", detail=f"{len(calls)} calls")
    db.session.commit()
    return {
        "items": [serialise_call(c, visits[c.id]) for c in calls],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


def caller_history(actor: User, number: str, now: datetime) -> dict[str, Any]:
    """The caller behind ``number`` with their calls and visits, newest first.

    404 when the circle has never seen the number; 422 naming ``number`` when it
    cannot be read. The read is written to the access log.
    """
    _check_role(actor, READ_ROLES)
    circle = _circle_of(actor)
    try:
        wanted = normalise_number(number, circle.country)
    except InvalidNumber as exc:
        v = Validator()
        v.add("number", _number_error(exc))
        v.raise_if_any()
        raise  # pragma: no cover - raise_if_any always raises here
    caller = db.session.scalars(scoped(Caller, circle.id).where(Caller.number == wanted)).first()
    if caller is None:
        raise NotFound("This number has never called the circle.", code="caller_not_found")
    calls = list(
        db.session.scalars(
            scoped(Call, circle.id)
            .where(Call.caller_id == caller.id)
            .order_by(Call.created_at.desc(), Call.id.desc())
            .limit(HISTORY_LIMIT)
        )
    )
    call_ids = [c.id for c in calls]
    visits: list[Visit] = []
    if call_ids:
        visits = list(
            db.session.scalars(
                scoped(Visit, circle.id)
                .where(Visit.call_id.in_(call_ids))
                .order_by(Visit.created_at.desc(), Visit.id.desc())
            )
        )
    by_call: dict[int, list[int]] = defaultdict(list)
    for visit in sorted(visits, key=lambda x: x.id):
        by_call[visit.call_id].append(visit.id)
    log_access(circle.id, actor.id, "caller", caller.id, now, action="history")
    db.session.commit()
    return {
        "caller": {
            "id": caller.id,
            "number": caller.number,
            "name": caller.name,
            "first_seen_at": caller.first_seen_at,
            "last_seen_at": caller.last_seen_at,
        },
        "calls": [serialise_call(c, by_call[c.id]) for c in calls],
        "visits": [_serialise_visit(x) for x in visits],
        "risk_flags": [],
    }


__all__ = [
    "MAX_PAGE_SIZE",
    "READ_ROLES",
    "WRITE_ROLES",
    "caller_history",
    "create_call",
    "find_or_create_caller",
    "get_call",
    "list_calls",
    "record_telephony_event",
    "serialise_call",
    "update_call",
]
