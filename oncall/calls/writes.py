"""Writing a new call: its caller, the call row and its timeline events.

Logging a call is the dispatcher's hot path. On PostgreSQL the three writes are
one statement: a caller upsert, the call insert that reads the caller's id and
name from it, and the timeline inserts that read the call's id, as
data-modifying common table expressions. The statement is built once per
process from the tables' metadata, so a new column of ``calls`` is written
without touching this module. Elsewhere (the embedded SQLite database) the ORM
writes them one after the other, with the same result.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Text, bindparam, column, func, insert, literal, select, true
from sqlalchemy.dialects import postgresql

from oncall.calls.callers import find_or_create_caller
from oncall.calls.models import Call, Caller
from oncall.core.timeline import TimelineEvent, jsonable, record
from oncall.extensions import db

Event = tuple[str, dict[str, Any]]


def insert_call(
    call: Call,
    number: str | None,
    seen_at: datetime,
    events: list[Event],
    actor_id: int,
    now: datetime,
) -> None:
    """Write ``call`` (every column set but its id and caller), find or create its
    caller by E.164 ``number`` (seen at ``seen_at``) and add ``events`` to its
    timeline, in the current transaction. Sets ``call.id``, ``call.caller_id`` and,
    when the call has no caller name, the caller's known name. The caller commits.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        _insert_in_one_statement(call, number, seen_at, events, actor_id, now)
        return
    if number:
        caller = find_or_create_caller(call.circle_id, number, seen_at, call.caller_name)
        call.caller_id = caller.id
        call.caller_name = call.caller_name or caller.name
    db.session.add(call)
    db.session.flush()
    for kind, data in events:
        record(call.circle_id, "call", call.id, kind, now, actor_id, **data)


def _insert_in_one_statement(
    call: Call,
    number: str | None,
    seen_at: datetime,
    events: list[Event],
    actor_id: int,
    now: datetime,
) -> None:
    params = {f"c_{name}": getattr(call, name) for name in _call_columns()}
    params.update(
        circle_id=call.circle_id,
        caller_number=number,
        caller_name=call.caller_name,
        seen_at=seen_at,
        now=now,
        actor_id=actor_id,
        events=[{"kind": kind, "data": jsonable(data)} for kind, data in events],
    )
    call.id, call.caller_id, call.caller_name = db.session.execute(
        _one_statement(), params
    ).one()


@functools.cache
def _call_columns() -> tuple[str, ...]:
    """Columns of ``calls`` taken from the Call object as they are."""
    skip = {"id", "circle_id", "caller_id", "caller_name"}
    return tuple(c.name for c in Call.__table__.columns if c.name not in skip)


@functools.cache
def _one_statement() -> Any:
    calls, callers, timeline = Call.__table__, Caller.__table__, TimelineEvent.__table__
    circle_id = bindparam("circle_id", type_=Integer)
    number = bindparam("caller_number", type_=callers.c.number.type)
    name = bindparam("caller_name", type_=callers.c.name.type)
    seen_at = bindparam("seen_at", type_=callers.c.last_seen_at.type)

    # The caller, found or created (no row at all when the number is withheld).
    upsert = postgresql.insert(callers).from_select(
        ["circle_id", "number", "name", "first_seen_at", "last_seen_at"],
        select(circle_id, number, name, seen_at, seen_at).where(number.is_not(None)),
    )
    new = upsert.excluded
    caller = (
        upsert.on_conflict_do_update(
            index_elements=["circle_id", "number"],
            set_={
                "first_seen_at": func.least(callers.c.first_seen_at, new.first_seen_at),
                "last_seen_at": func.greatest(callers.c.last_seen_at, new.last_seen_at),
                "name": func.coalesce(new.name, callers.c.name),
            },
        )
        .returning(callers.c.id, callers.c.name)
        .cte("caller")
    )

    # The call, joined to the caller when there is one.
    one = select(literal(1).label("one")).subquery("one")
    names = _call_columns()
    values = [bindparam(f"c_{n}", type_=calls.c[n].type) for n in names]
    new_call = (
        insert(calls)
        .from_select(
            [*names, "circle_id", "caller_id", "caller_name"],
            select(*values, circle_id, caller.c.id, func.coalesce(name, caller.c.name))
            .select_from(one.outerjoin(caller, true())),
        )
        .returning(calls.c.id, calls.c.caller_id, calls.c.caller_name)
        .cte("new_call")
    )

    # Its timeline events, given as a JSON array of {kind, data}.
    event = (
        func.jsonb_to_recordset(bindparam("events", type_=postgresql.JSONB))
        .table_valued(column("kind", Text), column("data", postgresql.JSONB))
        .render_derived(with_types=True)
    )
    new_events = insert(timeline).from_select(
        ["circle_id", "subject_type", "subject_id", "at", "kind", "actor_id", "data"],
        select(
            circle_id,
            literal("call"),
            new_call.c.id,
            bindparam("now", type_=timeline.c.at.type),
            event.c.kind,
            bindparam("actor_id", type_=Integer),
            event.c.data,
        ).select_from(new_call.join(event, true())),
    ).cte("new_events")

    return select(new_call.c.id, new_call.c.caller_id, new_call.c.caller_name).add_cte(
        new_events
    )
