"""A call logged by hand writes the same rows on both write paths: one statement on
PostgreSQL, the ORM sequence on SQLite (the embedded database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from config.settings import Settings
from oncall import create_app
from oncall.calls import services
from oncall.calls.models import Call, Caller
from oncall.core.clock import utcnow
from oncall.core.timeline import TimelineEvent
from oncall.extensions import db as _db
from tests import factories as f


@pytest.fixture(params=["postgresql", "sqlite"])
def backend(request, settings, tmp_path) -> Iterator[str]:
    """An app context on the test PostgreSQL database or on a new SQLite file."""
    if request.param == "postgresql":
        request.getfixturevalue("db")
        yield "postgresql"
        return
    app = create_app(Settings(profile="test", secret_key="k" * 40, instance_path=str(tmp_path)))
    with app.app_context():
        _db.create_all()
        yield "sqlite"
        _db.session.remove()
        _db.engine.dispose()


def _dispatcher():
    circle = f.make_circle("Cercle des écritures")
    return f.make_user(circle, "dispatcher")


def _events(call_id: int) -> list[str]:
    return list(
        _db.session.scalars(
            select(TimelineEvent.kind)
            .where(TimelineEvent.subject_type == "call", TimelineEvent.subject_id == call_id)
            .order_by(TimelineEvent.id)
        )
    )


def test_caller_found_by_number_and_seen_times_only_widen(backend):
    assert _db.engine.dialect.name == backend
    dispatcher = _dispatcher()
    now = utcnow()
    first = services.create_call(
        dispatcher,
        {
            "caller_number": "0470 12 34 56",
            "caller_name": "Marie",
            "outcome": "no_action",
            "identity_verified": True,
            "patient": {"name": "Jean", "age": 80},
        },
        now,
    )
    earlier = services.create_call(
        dispatcher,
        {"caller_number": "+32 470 12 34 56", "answered_at": now - timedelta(hours=2)},
        now + timedelta(minutes=1),
    )
    callers = list(_db.session.scalars(select(Caller)))
    assert len(callers) == 1
    caller = callers[0]
    assert caller.number == "+32470123456"
    assert caller.name == "Marie"  # a call without a name keeps the known one
    assert caller.first_seen_at == now - timedelta(hours=2)  # moved back
    assert caller.last_seen_at == now  # not moved back by the earlier call

    assert first["caller_number"] == earlier["caller_number"] == "+32470123456"
    assert earlier["caller_name"] == "Marie"  # taken from the caller
    rows = {c.id: c for c in _db.session.scalars(select(Call))}
    assert rows[first["id"]].caller_id == rows[earlier["id"]].caller_id == caller.id
    assert rows[first["id"]].patient_name == "Jean"
    assert rows[first["id"]].dispatcher_id == dispatcher.id
    assert _events(first["id"]) == ["call.created", "call.outcome_set", "call.identity_verified"]
    assert _events(earlier["id"]) == ["call.created"]


def test_a_withheld_number_logs_the_call_without_a_caller(backend):
    dispatcher = _dispatcher()
    logged = services.create_call(dispatcher, {"reason": "fever"}, utcnow())
    call = _db.session.get(Call, logged["id"])
    assert call is not None
    assert call.caller_id is None
    assert call.caller_number is None
    assert _db.session.scalars(select(Caller)).first() is None
    assert _events(call.id) == ["call.created"]
