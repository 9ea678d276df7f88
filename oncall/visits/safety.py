"""What the visit use cases ask of the safety core: deadlines, codes, duress alerts.

Every function here runs inside the calling use case's transaction (the caller
commits), so a deadline moves, an alert closes or a duress alert opens in the same
commit as the visit's change, or not at all.

- Arrival: armed when a doctor gets the visit, for the dispatcher's estimate or
  the circle's ``arrival_minutes`` after the assignment; met by the check-in
  (even a late one); cancelled by unassignment or cancellation.
- Departure: armed by the check-in for the expected length of the visit
  (the circle's ``visit_minutes`` by default), with a reminder to the doctor the
  circle's ``reminder_minutes`` before; pushed later by an extension; met by the
  check-out.
- A deadline that was already missed has opened an alert; the doctor's check-in,
  check-out or extension shows they are fine, so that alert is resolved.
- A duress code opens a silent ``duress`` alert and changes nothing else: the
  doctor's screen must look exactly as after the check-in code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from oncall.accounts.codes import CodeMatch, check_code_guarded
from oncall.accounts.models import User
from oncall.alerts import deadlines, engine, lifecycle
from oncall.alerts.models import ACTIVE_ALERT_STATES, DEADLINE_KINDS, Alert
from oncall.circles.models import Circle
from oncall.core.timeline import record
from oncall.errors import Validator
from oncall.extensions import db
from oncall.notify.stream import publish
from oncall.visits.models import Visit

logger = logging.getLogger(__name__)

__all__ = [
    "CodeMatch",
    "arm_arrival",
    "arm_departure",
    "cancel_deadlines",
    "default_arrival",
    "meet",
    "open_duress",
    "push_departure",
    "reminder_of",
    "verify_code",
]


def default_arrival(circle: Circle, now: datetime) -> datetime:
    """When a doctor assigned ``now`` must arrive without the dispatcher's estimate."""
    return now + timedelta(minutes=circle.arrival_minutes)


def reminder_of(circle: Circle) -> timedelta | None:
    """How long before the departure deadline the doctor is reminded (None: never)."""
    minutes = circle.reminder_minutes or 0
    return timedelta(minutes=minutes) if minutes > 0 else None


def arm_arrival(visit: Visit, due_at: datetime, now: datetime, actor: User | None) -> None:
    """Arm the arrival deadline of the visit's doctor for ``due_at``; it becomes ``arrive_by``."""
    visit.arrive_by = due_at
    deadlines.arm(
        circle_id=visit.circle_id,
        visit_id=visit.id,
        doctor_id=visit.doctor_id,
        kind="arrival",
        due_at=due_at,
        now=now,
        actor_id=actor.id if actor else None,
    )


def arm_departure(
    visit: Visit, circle: Circle, minutes: int, now: datetime, actor: User | None
) -> None:
    """Arm the departure deadline ``minutes`` after ``now`` (the check-in), with the reminder."""
    deadlines.arm(
        circle_id=visit.circle_id,
        visit_id=visit.id,
        doctor_id=visit.doctor_id,
        kind="departure",
        due_at=now + timedelta(minutes=minutes),
        now=now,
        remind_before=reminder_of(circle),
        actor_id=actor.id if actor else None,
    )


def cancel_deadlines(
    visit: Visit, now: datetime, actor: User | None, kinds: tuple[str, ...] = DEADLINE_KINDS
) -> None:
    """Close the visit's armed deadlines of ``kinds`` as cancelled (missed ones stay missed)."""
    for kind in kinds:
        deadlines.close(visit.id, kind, "cancelled", now, actor.id if actor else None)


def meet(visit: Visit, kind: str, doctor: User, note: str, now: datetime) -> None:
    """The doctor did what the deadline of ``kind`` waited for: mark it met.

    An armed deadline is met even if its time has passed (the sweep has not got to
    it yet). One the sweep already marked missed stays missed, and the alert it
    opened, if still active, is resolved with ``note``: the doctor has shown they
    are fine.
    """
    deadlines.close(visit.id, kind, "met", now, doctor.id)
    resolve_missed(visit, kind, doctor, note, now)


def resolve_missed(visit: Visit, kind: str, doctor: User, note: str, now: datetime) -> None:
    """Resolve the active alert opened by the visit's missed deadline of ``kind``, if any."""
    row = deadlines.current(visit.id, kind)
    if row is None or row.state != "missed" or row.alert_id is None:
        return
    alert = lifecycle.lock_alert(visit.circle_id, row.alert_id)
    if alert is None or alert.status not in ACTIVE_ALERT_STATES:
        return
    lifecycle.resolve(alert, doctor.id, note, now, automatic=True)
    logger.info("alert %s of visit %s resolved: %s", alert.id, visit.id, note)


def push_departure(
    visit: Visit, circle: Circle, minutes: int, doctor: User, now: datetime
) -> None:
    """Move the departure deadline ``minutes`` later (from now once it has passed).

    A visit checked in before deadlines existed has none: it is armed from now.
    An alert opened by a missed departure is resolved: the doctor answered.
    """
    # Before the extension re-arms the row, while it still says which alert it opened.
    resolve_missed(visit, "departure", doctor, "doctor extended the visit", now)
    row = deadlines.extend(
        visit.id, minutes, now, remind_before=reminder_of(circle), actor_id=doctor.id
    )
    if row is None:
        arm_departure(visit, circle, minutes, now, doctor)


def verify_code(
    v: Validator, doctor: User, code: str | None, now: datetime
) -> CodeMatch:
    """Which of the doctor's codes ``code`` is; a wrong code is a problem on ``code``.

    Both hashes are always verified (see :func:`oncall.accounts.codes.check_code`),
    so the check-in code and the duress code take the same time; repeated wrong
    codes lock the codes for a while, except the duress code
    (:func:`oncall.accounts.codes.check_code_guarded`).
    """
    if code is not None and not isinstance(code, str):
        v.add("code", "Not a valid string.")
        return CodeMatch.WRONG
    match = check_code_guarded(doctor, code, now)
    if match is CodeMatch.WRONG:
        v.add("code", "This is not your code.")
    return match


def open_duress(visit: Visit, place: Mapping[str, Any] | None, now: datetime) -> None:
    """Open the silent duress alert of the visit (coordinators and police at once).

    When a duress alert of the visit's doctor for this visit is still active (the
    duress code at check-in, then again at check-out), it is marked again on the
    consoles instead: one alert, not a second round of calls to the police.
    The actor is left empty on purpose: nothing in the visit's own records names
    the doctor's action. Its events on the visit's timeline are kept from the
    doctor's views (:func:`oncall.visits.queries.visible_events`).
    """
    active = db.session.scalars(
        select(Alert)
        .where(Alert.circle_id == visit.circle_id, Alert.kind == "duress",
               Alert.visit_id == visit.id, Alert.doctor_id == visit.doctor_id,
               Alert.status.in_(ACTIVE_ALERT_STATES))
        .order_by(Alert.id.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if active is not None:
        record(visit.circle_id, "alert", active.id, "alert.duress_repeated", now,
               visit_id=visit.id)
        publish(visit.circle_id, "alert.duress_repeated", "alert", active.id, now,
                visit_id=visit.id)
        logger.warning("duress code again for visit %s: alert %s", visit.id, active.id)
        return
    engine.open_alert(
        circle_id=visit.circle_id,
        kind="duress",
        now=now,
        visit=visit,
        location=dict(place) if place else None,
        actor_id=None,
    )
    logger.warning("duress alert opened for visit %s", visit.id)
