"""Assignment under row locks, on PostgreSQL with concurrent transactions.

Each scenario runs its transactions in threads, each in its own app context (its
own session and connection). One transaction is held open after it has taken its
locks; the test then checks, in ``pg_stat_activity``, that the other one waits on
a lock instead of deciding from data that is about to change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from oncall.accounts.models import User
from oncall.errors import ValidationFailed
from oncall.extensions import db
from oncall.visits import services
from oncall.visits.models import OPEN_STATES, Visit
from tests import factories as f
from tests.visits.conftest import NOW, events, make_call, make_visit, on_shift

LATER = NOW + timedelta(minutes=5)
TIMEOUT = 30


# --------------------------------------------------------------------------- helpers


class Worker(threading.Thread):
    """Runs ``fn`` in its own app context; keeps its result or the exception it raised."""

    def __init__(self, app: Any, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.app, self.fn = app, fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        with self.app.app_context():
            try:
                self.result = self.fn()
            except BaseException as exc:  # reported by the test's assertions
                self.error = exc
            finally:
                db.session.remove()
                self.done.set()


def _waiters(fragment: str) -> int:
    """How many sessions of this database wait on a lock in a statement containing ``fragment``."""
    with db.engine.connect() as conn:
        return int(
            conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                    "AND query ILIKE :pattern"
                ),
                {"pattern": f"%{fragment}%"},
            )
        )


def _waits_on_lock(worker: Worker, fragment: str) -> bool:
    """True once ``worker`` waits on a lock in such a statement; False if it finished first."""
    for _ in range(TIMEOUT * 20):
        if worker.done.wait(timeout=0.05):
            return False
        if _waiters(fragment):
            return True
    return False


def _open_visits(doctor_id: int) -> int:
    db.session.rollback()
    return db.session.scalar(
        select(func.count(Visit.id)).where(
            Visit.doctor_id == doctor_id, Visit.status.in_(("assigned", "on_site"))
        )
    )


def _deactivate(
    doctor_id: int,
    circle_id: int,
    *,
    lock_circle: bool,
    locked: threading.Event | None = None,
    release: threading.Event | None = None,
) -> str:
    """What deactivating a doctor does to the database, as the accounts service does it.

    Locks the circle (when ``lock_circle``) and then the user's row ``FOR UPDATE``,
    counts the open visits under that lock (409 when there are any), sets
    ``active = false``. With ``locked``/``release``, it signals after the update and
    waits before committing.
    """
    with db.engine.connect() as conn, conn.begin() as tx:
        if lock_circle:
            conn.execute(text("SELECT id FROM circles WHERE id = :c FOR UPDATE"), {"c": circle_id})
        conn.execute(text("SELECT id FROM users WHERE id = :d FOR UPDATE"), {"d": doctor_id})
        open_visits = conn.scalar(
            text("SELECT count(*) FROM visits WHERE doctor_id = :d AND status = ANY(:states)"),
            {"d": doctor_id, "states": list(OPEN_STATES)},
        )
        if open_visits:
            tx.rollback()
            return "409 doctor_has_open_visits"
        conn.execute(
            text("UPDATE users SET active = false, deactivated_at = now() WHERE id = :d"),
            {"d": doctor_id},
        )
        if locked is not None and release is not None:
            locked.set()
            assert release.wait(timeout=TIMEOUT)
    return "deactivated"


def _gate(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[threading.Event, threading.Event]:
    """Hold the first call of ``services.<name>`` after it returns, until released.

    Returns (held, release): ``held`` is set once the first call has returned (its
    locks are taken); the call then waits for ``release``. Later calls pass through.
    """
    real = getattr(services, name)
    held, release = threading.Event(), threading.Event()
    guard = threading.Lock()
    calls: list[int] = []

    def gated(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        with guard:
            calls.append(1)
            first = len(calls) == 1
        if first:
            held.set()
            assert release.wait(timeout=TIMEOUT)
        return result

    monkeypatch.setattr(services, name, gated)
    return held, release


def _join(*workers: Worker) -> None:
    for worker in workers:
        worker.join(timeout=2 * TIMEOUT)
        assert not worker.is_alive()


@contextmanager
def _statements() -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)


# --------------------------------------------------------------------------- creation


def test_concurrent_creations_in_a_zone_pick_different_doctors(app, world, doctors, monkeypatch):
    """Two dispatchers, two doctors on duty with no visit: one visit each.

    The first creation pauses after choosing its doctor (before committing); the
    second must then wait on a lock instead of choosing from a stale count.
    """
    a, b = doctors[0], doctors[1]
    on_shift(world.zone, a)
    on_shift(world.zone, b)
    calls = [make_call(world.circle), make_call(world.circle)]
    dispatcher_id, zone_id = world.dispatcher.id, world.zone.id
    held, release = _gate(monkeypatch, "pick_doctor")

    def create(index: int) -> Callable[[], Any]:
        def run() -> Any:
            actor = db.session.get(User, dispatcher_id)
            payload = {"call_id": calls[index].id, "zone_id": zone_id}
            return services.create_visit(actor, payload, NOW)

        return run

    first, second = Worker(app, create(0)), Worker(app, create(1))
    first.start()
    assert held.wait(timeout=TIMEOUT)
    second.start()
    blocked = _waits_on_lock(second, "FOR ")
    release.set()
    _join(first, second)

    assert blocked, "the second creation did not wait for the first one's locks"
    assert first.error is None, first.error
    assert second.error is None, second.error
    assert {first.result["doctor_id"], second.result["doctor_id"]} == {a.id, b.id}
    db.session.rollback()
    assert sorted(db.session.scalars(select(Visit.doctor_id))) == sorted([a.id, b.id])


def test_a_doctor_on_duty_in_two_zones_is_counted_once_per_visit(app, world, doctors, monkeypatch):
    """X is on duty in zones A and B, Y only in B, Z only in A; nobody has a visit.

    X's shifts started first, so from a stale count both creations would choose X
    (X with 2 visits, Y with none). The creation in A holds the rows of X and Z;
    the one in B must wait on X's row and then count X's new visit: it goes to Y.
    """
    x, y, z = doctors
    zone_a, zone_b = world.zone, f.make_zone(world.circle, "Sud")
    on_shift(zone_a, x, started=timedelta(hours=3))
    on_shift(zone_b, x, started=timedelta(hours=3))
    on_shift(zone_b, y, started=timedelta(hours=1))
    on_shift(zone_a, z, started=timedelta(hours=1))
    call_a, call_b = make_call(world.circle), make_call(world.circle)
    dispatcher_id = world.dispatcher.id
    held, release = _gate(monkeypatch, "pick_doctor")

    def create(call_id: int, zone_id: int) -> Callable[[], Any]:
        def run() -> Any:
            actor = db.session.get(User, dispatcher_id)
            return services.create_visit(actor, {"call_id": call_id, "zone_id": zone_id}, NOW)

        return run

    in_a = Worker(app, create(call_a.id, zone_a.id))
    in_b = Worker(app, create(call_b.id, zone_b.id))
    in_a.start()
    assert held.wait(timeout=TIMEOUT)
    in_b.start()
    blocked = _waits_on_lock(in_b, "FROM users")
    release.set()
    _join(in_a, in_b)

    assert blocked, "the creation in zone B did not wait for the doctor's row lock"
    assert in_a.error is None, in_a.error
    assert in_b.error is None, in_b.error
    assert in_a.result["doctor_id"] == x.id
    assert in_b.result["doctor_id"] == y.id
    assert (_open_visits(x.id), _open_visits(y.id), _open_visits(z.id)) == (1, 1, 0)


def test_doctor_rows_are_locked_in_id_order_before_the_count(world, doctors):
    late, early = doctors[0], doctors[2]  # the earlier shift belongs to the higher id
    on_shift(world.zone, late, started=timedelta(hours=1))
    on_shift(world.zone, early, started=timedelta(hours=2))
    call = make_call(world.circle)
    with _statements() as seen:
        out = services.create_visit(
            world.dispatcher, {"call_id": call.id, "zone_id": world.zone.id}, NOW
        )
    assert out["doctor_id"] == early.id
    locks = [i for i, s in enumerate(seen) if s.startswith("SELECT users.") and "FOR UPDATE" in s]
    counts = [i for i, s in enumerate(seen) if "count(visits.id)" in s]
    assert len(locks) == 1, seen
    assert "ORDER BY users.id" in seen[locks[0]]
    assert counts, seen
    assert locks[0] < counts[0], seen
    circle_share = [i for i, s in enumerate(seen) if "FROM circles" in s and "FOR KEY SHARE" in s]
    assert circle_share, seen
    assert circle_share[0] < locks[0], seen


def test_assignment_locks_the_doctor_after_the_visit(world):
    visit = make_visit(world.zone, "unassigned")
    with _statements() as seen:
        services.assign_visit(world.dispatcher, visit.id, world.doctor.id, LATER)
    order = [
        name
        for s in seen
        for name, marker in (
            ("circle", "FROM circles"),
            ("visit", "FROM visits"),
            ("doctor", "FROM users"),
        )
        if s.startswith("SELECT") and marker in s and " FOR " in s
    ]
    assert order == ["circle", "visit", "doctor"], seen


# --------------------------------------------------------------------------- deactivation


@pytest.mark.parametrize("lock_circle", [False, True], ids=["user-lock", "circle-then-user"])
def test_assignment_first_then_deactivation_is_409(app, world, monkeypatch, lock_circle):
    """The assignment holds the doctor's row; deactivation waits, then sees the open visit."""
    visit = make_visit(world.zone, "unassigned")
    doctor_id, circle_id = world.doctor.id, world.circle.id
    dispatcher_id, visit_id = world.dispatcher.id, visit.id
    held, release = _gate(monkeypatch, "lock_doctors")

    def assign() -> Any:
        actor = db.session.get(User, dispatcher_id)
        return services.assign_visit(actor, visit_id, doctor_id, LATER)

    assigning = Worker(app, assign)
    deactivating = Worker(app, lambda: _deactivate(doctor_id, circle_id, lock_circle=lock_circle))
    assigning.start()
    assert held.wait(timeout=TIMEOUT)
    deactivating.start()
    blocked = _waits_on_lock(deactivating, "FOR UPDATE")
    release.set()
    _join(assigning, deactivating)

    assert blocked, "deactivation did not wait for the assignment's lock"
    assert assigning.error is None, assigning.error
    assert assigning.result["doctor_id"] == doctor_id
    assert deactivating.error is None, deactivating.error
    assert deactivating.result == "409 doctor_has_open_visits"
    db.session.rollback()
    assert db.session.get(User, doctor_id).active is True
    assert db.session.get(Visit, visit_id).doctor_id == doctor_id


@pytest.mark.parametrize("lock_circle", [False, True], ids=["user-lock", "circle-then-user"])
def test_deactivation_first_then_assignment_is_422(app, world, lock_circle):
    """Deactivation holds the doctor's row; the assignment waits, then refuses the doctor."""
    visit = make_visit(world.zone, "unassigned")
    doctor_id, circle_id = world.doctor.id, world.circle.id
    dispatcher_id, visit_id = world.dispatcher.id, visit.id
    locked, release = threading.Event(), threading.Event()

    def assign() -> Any:
        actor = db.session.get(User, dispatcher_id)
        return services.assign_visit(actor, visit_id, doctor_id, LATER)

    deactivating = Worker(
        app,
        lambda: _deactivate(
            doctor_id, circle_id, lock_circle=lock_circle, locked=locked, release=release
        ),
    )
    assigning = Worker(app, assign)
    deactivating.start()
    assert locked.wait(timeout=TIMEOUT)
    assigning.start()
    # Without the circle lock the assignment passes its first check (the change is
    # not committed yet) and must wait on the doctor's row.
    blocked = _waits_on_lock(assigning, "FOR KEY SHARE" if lock_circle else "FROM users")
    release.set()
    _join(deactivating, assigning)

    assert blocked, "the assignment did not wait for the deactivation's lock"
    assert deactivating.error is None, deactivating.error
    assert deactivating.result == "deactivated"
    assert isinstance(assigning.error, ValidationFailed), assigning.error
    assert list(assigning.error.fields) == ["doctor_id"]
    assert assigning.error.fields["doctor_id"] == ["This doctor is not active."]
    db.session.rollback()
    stored = db.session.get(Visit, visit_id)
    assert (stored.status, stored.doctor_id) == ("unassigned", None)
    assert events(visit_id) == []
    assert db.session.get(User, doctor_id).active is False
