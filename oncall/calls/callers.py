"""Callers: the people behind the numbers that call a circle, and their history.

A caller is found or created by E.164 number, safely when two requests race.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func
from sqlalchemy.dialects import postgresql, sqlite

from oncall.accounts.models import User
from oncall.calls.checks import READ_ROLES, check_role, circle_of, number_error
from oncall.calls.models import Call, Caller
from oncall.calls.numbers import InvalidNumber, normalise_number
from oncall.calls.present import serialise_call, serialise_visit
from oncall.core.tenancy import scoped
from oncall.core.timeline import log_access
from oncall.errors import NotFound, Validator
from oncall.extensions import db
from oncall.visits.models import Visit

#: Most recent calls shown in a caller's history.
HISTORY_LIMIT = 200


def insert_or_ignore(model: type[Any]) -> Any:
    """An INSERT of ``model`` that supports ``ON CONFLICT`` clauses on this database."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise RuntimeError(f"unsupported database dialect {dialect}")  # pragma: no cover


@functools.cache
def _caller_upsert(dialect: str) -> Any:
    """The caller upsert for one dialect, built once: constructing it (with its
    ``excluded`` alias) costs more CPU than running it."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Caller).values(
        circle_id=bindparam("circle_id"),
        number=bindparam("number"),
        name=bindparam("name"),
        first_seen_at=bindparam("seen_at", type_=Caller.__table__.c.first_seen_at.type),
        last_seen_at=bindparam("seen_at", type_=Caller.__table__.c.last_seen_at.type),
    )
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["circle_id", "number"],
        set_={
            "first_seen_at": case(
                (new.first_seen_at < Caller.first_seen_at, new.first_seen_at),
                else_=Caller.first_seen_at,
            ),
            "last_seen_at": case(
                (new.last_seen_at > Caller.last_seen_at, new.last_seen_at),
                else_=Caller.last_seen_at,
            ),
            "name": func.coalesce(new.name, Caller.name),
        },
    ).returning(Caller)


def find_or_create_caller(
    circle_id: int, number: str, seen_at: datetime, name: str | None = None
) -> Caller:
    """The circle's caller for an E.164 ``number``, created if new; safe when two requests race.

    One statement (an upsert returning the row): ``first_seen_at`` only moves back,
    ``last_seen_at`` only forward; ``name``, when given, replaces the known name.
    The row is locked until the transaction ends. The caller commits.
    """
    stmt = _caller_upsert(db.session.get_bind().dialect.name)
    caller: Caller = db.session.scalars(
        stmt,
        {"circle_id": circle_id, "number": number, "name": name, "seen_at": seen_at},
        execution_options={"populate_existing": True},
    ).one()
    return caller


def caller_history(actor: User, number: str, now: datetime) -> dict[str, Any]:
    """The caller behind ``number`` with their calls and visits, newest first.

    404 when the circle has never seen the number; 422 naming ``number`` when it
    cannot be read. The read is written to the access log.
    """
    check_role(actor, READ_ROLES)
    circle = circle_of(actor)
    try:
        wanted = normalise_number(number, circle.country)
    except InvalidNumber as exc:
        v = Validator()
        v.add("number", number_error(exc))
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
        "visits": [serialise_visit(x) for x in visits],
        "risk_flags": [],
    }
