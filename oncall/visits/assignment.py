"""Who gets a visit, and the row locks that keep that choice consistent.

Lock order of the use cases that lock doctors' rows, creation and assignment
(compatible with deactivating a user, which locks the circle and then the user's
row):

1. the circle row ``FOR KEY SHARE`` (:func:`hold_circle`), before anything else: the
   rows a use case inserts take it anyway through their foreign key, and taking it
   first means a transaction that locks the circle ``FOR UPDATE`` and then a user
   never waits on us while we wait on it;
2. the call and the zone (creation), or the visit (assignment);
3. the doctors' ``users`` rows ``FOR UPDATE``, in ascending id order
   (:func:`lock_doctors`), before their open visits are counted or one is given
   the visit, and their ``active`` flag and role are read again under that lock.

So two creations in different zones that share a doctor on duty serialise on the
doctor's row, and a doctor cannot be deactivated between being chosen and the
visit being committed: deactivation counts the open visits under the same row lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select

from oncall.accounts.models import User
from oncall.circles.models import Circle
from oncall.extensions import db
from oncall.rota.services import on_duty
from oncall.visits.checks import doctor_problem
from oncall.visits.common import locked
from oncall.visits.models import Visit

#: States in which a doctor is busy with a visit (the assignment rule counts them).
BUSY_STATES = ("assigned", "on_site")
#: Stable code stored in ``unassigned_reason`` when nobody is on duty in the zone.
NO_DOCTOR_ON_DUTY = "no_doctor_on_duty"


def hold_circle(circle_id: int) -> None:
    """Take the circle row ``FOR KEY SHARE`` (step 1 of the lock order); blocks no other reader."""
    db.session.execute(
        select(Circle.id).where(Circle.id == circle_id).with_for_update(read=True, key_share=True)
    )


def lock_doctors(circle_id: int, ids: Iterable[int]) -> list[User]:
    """The circle's users among ``ids``, locked ``FOR UPDATE`` in ascending id order.

    The rows are read again under the lock; the caller checks role and ``active``
    on what this returns.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return []
    stmt = select(User).where(User.circle_id == circle_id, User.id.in_(wanted)).order_by(User.id)
    return list(db.session.scalars(locked(stmt)))


def pick_doctor(circle_id: int, zone_id: int, now: datetime) -> tuple[User | None, int]:
    """The active doctor on duty in the zone with the fewest open visits, earliest shift, lowest id.

    Returns the doctor (or None) and how many active doctors were on duty. The
    candidates' rows are locked before their open visits are counted, so the count
    cannot go stale before the caller commits the visit.
    """
    first_start: dict[int, datetime] = {}
    for shift in on_duty(circle_id, zone_id, now):
        known = first_start.get(shift.doctor_id)
        if known is None or shift.starts_at < known:
            first_start[shift.doctor_id] = shift.starts_at
    doctors = {
        user.id: user
        for user in lock_doctors(circle_id, first_start)
        if doctor_problem(user) is None
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


def on_duty_now(circle_id: int, zone_id: int, doctor_id: int, now: datetime) -> bool:
    """True when ``doctor_id`` has a shift in the zone covering ``now``."""
    return any(s.doctor_id == doctor_id for s in on_duty(circle_id, zone_id, now))
