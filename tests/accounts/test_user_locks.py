"""Deactivation and a doctor's role change serialise with visit assignment.

Both lock the user's row (``SELECT ... FOR UPDATE``) before counting the doctor's
open visits, so a visit being assigned to that doctor in another transaction is
either seen or waited for; and the circle's row is locked without blocking the
inserts of other transactions that merely reference the circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from oncall.accounts import services
from oncall.accounts.models import User
from oncall.calls.models import Call
from oncall.core.clock import utcnow
from oncall.errors import Conflict
from oncall.extensions import db
from oncall.visits.models import Visit
from tests.conftest import World

LOCK_TIMEOUT = "SET LOCAL lock_timeout = '100ms'"


def deactivate(world: World) -> Any:
    return services.deactivate_user(world.admin, world.doctor.id, utcnow())


def make_dispatcher(world: World) -> Any:
    return services.update_user(world.admin, world.doctor.id, {"role": "dispatcher"}, utcnow())


CHANGES: list[Callable[[World], Any]] = [deactivate, make_dispatcher]


def add_visit(session: Session, world: World) -> None:
    """An open visit of the doctor, written (not committed) by another transaction."""
    now = utcnow()
    call = Call(circle_id=world.circle.id, state="answered", created_at=now, updated_at=now)
    session.add(call)
    session.flush()
    session.add(
        Visit(
            circle_id=world.circle.id,
            call_id=call.id,
            zone_id=world.zone.id,
            doctor_id=world.doctor.id,
            status="assigned",
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()


def doctor_row(world: World) -> User:
    db.session.expire_all()
    user = db.session.get(User, world.doctor.id)
    assert user is not None
    return user


@pytest.mark.parametrize("change", CHANGES)
def test_a_visit_being_assigned_is_waited_for_then_counted(db, world: World, change) -> None:
    """The assignment's insert holds a key-share lock on the doctor's row until it commits;
    the change waits for it, then counts the visit and refuses."""
    with db.engine.connect() as other:
        session = Session(bind=other)
        add_visit(session, world)
        db.session.execute(text(LOCK_TIMEOUT))
        with pytest.raises(OperationalError, match="lock timeout"):
            change(world)
        db.session.rollback()
        session.commit()
        session.close()
    with pytest.raises(Conflict) as err:
        change(world)
    assert err.value.code == "doctor_has_open_visits"
    user = doctor_row(world)
    assert (user.active, user.role) == (True, "doctor")


@pytest.mark.parametrize("change", CHANGES)
def test_rows_referencing_the_circle_do_not_block_the_change(db, world: World, change) -> None:
    """Another transaction holding a key-share lock on the circle (any insert of a row of
    the circle) lets the change through: the circle is locked FOR NO KEY UPDATE."""
    with db.engine.connect() as other:
        other.execute(
            text("SELECT id FROM circles WHERE id = :id FOR KEY SHARE"), {"id": world.circle.id}
        )
        db.session.execute(text(LOCK_TIMEOUT))
        change(world)
        other.rollback()
    user = doctor_row(world)
    assert (user.active, user.role) != (True, "doctor")
