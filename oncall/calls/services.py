"""Call-log use cases: telephone-system events, calls logged by hand, the call list.

Each public function is one transaction: it validates everything first, writes
the change with its timeline events and access-log rows, and commits once.
Checks live in :mod:`oncall.calls.checks`, the API form in :mod:`oncall.calls.present`
and callers with their history in :mod:`oncall.calls.callers` (re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from oncall.accounts.models import User
from oncall.calls.callers import (
    HISTORY_LIMIT,
    caller_history,
    find_or_create_caller,
    insert_or_ignore,
)
from oncall.calls.checks import (
    READ_ROLES,
    WRITE_ROLES,
    blank_to_none,
    check_role,
    circle_of,
    number_error,
    validate_details,
)
from oncall.calls.models import OUTCOMES, TELEPHONY_EVENTS, Call, Caller, TelephonyEvent
from oncall.calls.numbers import InvalidNumber, is_withheld, normalise_number, try_normalise
from oncall.calls.present import serialise_call, visit_ids
from oncall.calls.writes import insert_call
from oncall.circles.models import Circle
from oncall.core.checks import check_instant
from oncall.core.paging import MAX_LIMIT, check_page, envelope, page_of
from oncall.core.tenancy import get_in_circle, scoped
from oncall.core.timeline import log_access, record
from oncall.errors import Validator
from oncall.extensions import db

logger = logging.getLogger(__name__)

#: Most calls on one page of the list (the limit of every list of the API).
MAX_PAGE_SIZE = MAX_LIMIT
#: Agent fields may name users of these roles as the answering dispatcher.
AGENT_ROLES = ("dispatcher", "admin")

_STATE_RANK = {"ringing": 0, "answered": 1, "ended": 2}
_MAX_ROW_ID = 2**63 - 1
#: How far in the future an event or call time may lie (clocks drift).
_FUTURE_TOLERANCE = timedelta(minutes=10)
#: How old a telephone-system event may be and still be recorded.
_EVENT_MAX_AGE = timedelta(days=7)


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
    occurred_at = check_instant(v, "occurred_at", payload.get("occurred_at"), tz)
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
    line = blank_to_none(payload.get("line"))
    recording_ref = blank_to_none(payload.get("recording_ref"))

    # 1. The call: created by whichever event comes first, then locked.
    # RETURNING tells whether this statement inserted (rowcount is not reliable here).
    new_call_id = db.session.execute(
        insert_or_ignore(Call)
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
        insert_or_ignore(TelephonyEvent)
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
    check_role(actor, WRITE_ROLES)
    circle = circle_of(actor)
    v = Validator()
    number = None
    raw_number = blank_to_none(data.get("caller_number"))
    if raw_number is not None:
        try:
            number = normalise_number(raw_number, circle.country)
        except InvalidNumber as exc:
            v.add("caller_number", number_error(exc))
    patient, address, prep = validate_details(data, circle, now, v)
    answered_at = check_instant(v, "answered_at", data.get("answered_at"), circle.timezone)
    ended_at = check_instant(v, "ended_at", data.get("ended_at"), circle.timezone)
    for name, value in (("answered_at", answered_at), ("ended_at", ended_at)):
        if value is not None and value > now + _FUTURE_TOLERANCE:
            v.add(name, "Must not be in the future.")
    answered = answered_at or now
    if ended_at is not None and ended_at < answered:
        v.add("ended_at", "Must not be before the call was answered.")
    v.raise_if_any()

    verified = bool(data.get("identity_verified"))
    caller_name = blank_to_none(data.get("caller_name"))
    call = Call(
        circle_id=circle.id,
        call_ref=None,
        state="ended" if ended_at else "answered",
        line=blank_to_none(data.get("line")),
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
    call.caller_number = number
    events: list[tuple[str, dict[str, Any]]] = [("call.created", {"source": "manual"})]
    if call.outcome:
        events.append(("call.outcome_set", {"old": None, "new": call.outcome}))
    if verified:
        events.append(("call.identity_verified", {}))
    insert_call(call, number, answered, events, actor.id, now)
    # Serialised before the commit, which expires every loaded row: reading the call
    # back afterwards would cost a round trip per request for nothing.
    result = serialise_call(call, [])
    db.session.commit()
    logger.info("call %s logged by hand by user %s", result["id"], result["dispatcher_id"])
    return result


def update_call(
    actor: User, call_id: int, data: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """Change the fields sent on a call; an outcome change records the old and new value."""
    check_role(actor, WRITE_ROLES)
    call = get_in_circle(Call, call_id, actor.circle_id, what="call", lock=True)
    circle = circle_of(actor)
    v = Validator()
    patient, address, prep = validate_details(data, circle, now, v, current=call)
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
        caller_name = blank_to_none(data["caller_name"])
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
    ids = visit_ids(call.circle_id, [call.id])[call.id]
    db.session.commit()
    return serialise_call(call, ids)


def get_call(actor: User, call_id: int, now: datetime) -> dict[str, Any]:
    """One call of the actor's circle; the read is written to the access log."""
    check_role(actor, READ_ROLES)
    call = get_in_circle(Call, call_id, actor.circle_id, what="call")
    ids = visit_ids(call.circle_id, [call.id])[call.id]
    log_access(call.circle_id, actor.id, "call", call.id, now, action="read")
    db.session.commit()
    return serialise_call(call, ids)


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
    check_role(actor, READ_ROLES)
    circle = circle_of(actor)
    v = Validator()
    start_utc = check_instant(v, "start", start, circle.timezone)
    end_utc = check_instant(v, "end", end, circle.timezone)
    if start_utc and end_utc and end_utc <= start_utc:
        v.add("end", "Must be after start.")
    wanted = None
    if number is not None:
        try:
            wanted = normalise_number(number, circle.country)
        except InvalidNumber as exc:
            v.add("number", number_error(exc))
    if outcome is not None and outcome not in OUTCOMES:
        v.add("outcome", f"Must be one of {', '.join(OUTCOMES)}.")
    check_page(limit, offset, v)
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
    stmt = stmt.order_by(Call.created_at.desc(), Call.id.desc())
    page = envelope(list(db.session.scalars(page_of(stmt, limit, offset))), limit, offset)
    calls: list[Call] = page["items"]
    visits = visit_ids(circle.id, [c.id for c in calls])
    log_access(circle.id, actor.id, "call", None, now, action="list", detail=f"{len(calls)} calls")
    db.session.commit()
    page["items"] = [serialise_call(c, visits[c.id]) for c in calls]
    return page


__all__ = [
    "HISTORY_LIMIT",
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
