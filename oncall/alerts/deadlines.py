"""Arming, meeting, moving and closing a visit's deadlines.

These run inside the visit use case's transaction (the caller commits): a
check-in meets the arrival deadline and arms the departure one in the same
commit as the visit's new state, so a deadline is never armed for a change that
did not happen. Every armed time is also handed to :func:`oncall.core.dispatch.wake_at`,
the fast path; the scheduler's sweep is the guarantee.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from oncall.alerts.models import Deadline
from oncall.core import dispatch
from oncall.core.timeline import record
from oncall.extensions import db


def current(visit_id: int, kind: str, *, lock: bool = False) -> Deadline | None:
    """The visit's deadline of ``kind`` (any state), locked if asked."""
    stmt = select(Deadline).where(Deadline.visit_id == visit_id, Deadline.kind == kind)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return db.session.scalars(stmt).first()


def arm(
    *,
    circle_id: int,
    visit_id: int,
    doctor_id: int | None,
    kind: str,
    due_at: datetime,
    now: datetime,
    remind_before: timedelta | None = None,
    actor_id: int | None = None,
) -> Deadline:
    """Arm (or re-arm) the visit's deadline of ``kind`` for ``due_at``.

    A reminder is planned ``remind_before`` the deadline when that is still in the
    future. The row of an earlier arming is reused: one row per visit and kind.
    """
    row = current(visit_id, kind, lock=True)
    if row is None:
        row = Deadline(circle_id=circle_id, visit_id=visit_id, kind=kind, extended_minutes=0)
        db.session.add(row)
    row.doctor_id = doctor_id
    row.state = "armed"
    row.due_at = due_at
    row.armed_at = now
    row.closed_at = None
    row.alert_id = None
    row.reminded_at = None
    row.remind_at = None
    if remind_before is not None and remind_before > timedelta(0):
        remind_at = due_at - remind_before
        if remind_at > now:
            row.remind_at = remind_at
    db.session.flush()
    record(
        circle_id, "visit", visit_id, f"deadline.{kind}.armed", now, actor_id,
        deadline_id=row.id, due_at=due_at, remind_at=row.remind_at,
    )
    dispatch.wake_at(due_at)
    if row.remind_at is not None:
        dispatch.wake_at(row.remind_at)
    return row


def close(
    visit_id: int, kind: str, state: str, now: datetime, actor_id: int | None = None
) -> Deadline | None:
    """Mark the visit's armed deadline of ``kind`` met or cancelled; None if none was armed."""
    row = current(visit_id, kind, lock=True)
    if row is None or row.state != "armed":
        return None
    row.state = state
    row.closed_at = now
    row.remind_at = None
    record(
        row.circle_id, "visit", visit_id, f"deadline.{kind}.{state}", now, actor_id,
        deadline_id=row.id, due_at=row.due_at, early_by_seconds=int(
            (row.due_at - now).total_seconds()
        ),
    )
    return row


def extend(
    visit_id: int,
    minutes: int,
    now: datetime,
    *,
    remind_before: timedelta | None,
    actor_id: int | None = None,
) -> Deadline | None:
    """Push the armed departure deadline ``minutes`` later (from now if it already passed).

    Returns None when the visit has no departure deadline (not checked in).
    A missed deadline is armed again from now: the doctor answered.
    """
    row = current(visit_id, "departure", lock=True)
    if row is None or row.state not in ("armed", "missed"):
        return None
    base = row.due_at if row.state == "armed" and row.due_at > now else now
    row.due_at = base + timedelta(minutes=minutes)
    row.extended_minutes += minutes
    row.state = "armed"
    row.closed_at = None
    row.reminded_at = None
    row.remind_at = None
    if remind_before is not None and remind_before > timedelta(0):
        remind_at = row.due_at - remind_before
        if remind_at > now:
            row.remind_at = remind_at
    record(
        row.circle_id, "visit", visit_id, "deadline.departure.extended", now, actor_id,
        deadline_id=row.id, minutes=minutes, due_at=row.due_at,
    )
    dispatch.wake_at(row.due_at)
    if row.remind_at is not None:
        dispatch.wake_at(row.remind_at)
    return row


def oldest_overdue(now: datetime) -> float | None:
    """Seconds the most overdue armed deadline is past due (None: none is overdue)."""
    oldest = db.session.scalar(
        select(Deadline.due_at)
        .where(Deadline.state == "armed", Deadline.due_at <= now)
        .order_by(Deadline.due_at)
        .limit(1)
    )
    return None if oldest is None else (now - oldest).total_seconds()
