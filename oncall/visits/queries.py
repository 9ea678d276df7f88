"""Reading visits: one visit, its timeline, the list, a doctor's itinerary.

Each read of patient data is written to the access log in the same transaction.
A doctor reading their own visit does not see its alert events
(:func:`visible_events`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from oncall.accounts.models import User
from oncall.core.checks import check_instant
from oncall.core.paging import DEFAULT_LIMIT, envelope, page_of
from oncall.core.tenancy import scoped
from oncall.core.timeline import TimelineEvent, events_for, log_access
from oncall.errors import NotFound, Validator
from oncall.extensions import db
from oncall.rota.models import Shift
from oncall.visits.assignment import BUSY_STATES
from oncall.visits.checks import MAX_BIGINT, check_list_query, is_id
from oncall.visits.common import atomic, circle_timezone, load_visit, visit_not_found
from oncall.visits.models import Visit
from oncall.visits.present import present_itinerary, present_many, present_one

#: Default itinerary window when the doctor has no shift covering now.
ITINERARY_SPAN = timedelta(hours=12)


def ensure_visible(actor: User, visit_id: int) -> None:
    """Raise NotFound unless ``actor`` may see the visit (a doctor only their own). Reads only.

    Views of a visit's actions call it before parsing the body, so that another
    circle's visit answers 404 whatever the body holds.
    """
    if not is_id(visit_id, MAX_BIGINT):
        raise visit_not_found(visit_id)
    stmt = select(Visit.id).where(Visit.circle_id == actor.circle_id, Visit.id == visit_id)
    if actor.role == "doctor":
        stmt = stmt.where(Visit.doctor_id == actor.id)
    if db.session.scalar(stmt) is None:
        raise visit_not_found(visit_id)


#: Timeline events a doctor does not see on their own visit: the alerts about it.
HIDDEN_FROM_DOCTORS = "alert."


def visible_events(actor: User, events: Iterable[TimelineEvent]) -> list[TimelineEvent]:
    """The events of a visit's timeline that ``actor`` may see.

    A doctor does not see the alert events of their visit. A doctor who gave the
    duress code may have someone reading over their shoulder: nothing the doctor's
    screen can show may tell that an alert was opened. The other roles see all.
    """
    if actor.role != "doctor":
        return list(events)
    return [e for e in events if not e.kind.startswith(HIDDEN_FROM_DOCTORS)]


@atomic
def get_visit(actor: User, visit_id: int, now: datetime) -> dict[str, Any]:
    """One visit with its timeline (a doctor only their own, else 404); logs the read."""
    visit = load_visit(actor, visit_id)
    timeline = visible_events(actor, events_for("visit", visit.id, actor.circle_id))
    out = present_one(visit, timeline)
    log_access(actor.circle_id, actor.id, "visit", visit.id, now, action="read")
    db.session.commit()
    return out


def visit_timeline(actor: User, visit_id: int) -> list[dict[str, Any]]:
    """The visit's timeline events, oldest first (a doctor only their own visit, else 404)."""
    visit = load_visit(actor, visit_id)
    events = visible_events(actor, events_for("visit", visit.id, actor.circle_id))
    return [event.to_dict() for event in events]


@atomic
def list_visits(
    actor: User,
    doctor_id: int | None = None,
    zone_id: int | None = None,
    status: str | Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    *,
    offset: int = 0,
    now: datetime,
) -> dict[str, Any]:
    """A page of the circle's visits created in ``[start, end)``, newest first (id as tie-break).

    A doctor sees only their own. ``status`` is one state or several. Answers
    ``{"items", "limit", "offset", "next_offset"}`` (``next_offset`` null on the last
    page). Every visit returned is written to the access log.
    """
    v = Validator()
    states, begin, until = check_list_query(
        v,
        doctor_id=doctor_id,
        zone_id=zone_id,
        status=status,
        start=start,
        end=end,
        limit=limit,
        offset=offset,
        tz=circle_timezone(actor),
    )
    v.raise_if_any()

    stmt = scoped(Visit, actor.circle_id)
    if actor.role == "doctor":
        stmt = stmt.where(Visit.doctor_id == actor.id)
    if doctor_id is not None:
        stmt = stmt.where(Visit.doctor_id == doctor_id)
    if zone_id is not None:
        stmt = stmt.where(Visit.zone_id == zone_id)
    if states:
        stmt = stmt.where(Visit.status.in_(states))
    if begin is not None:
        stmt = stmt.where(Visit.created_at >= begin)
    if until is not None:
        stmt = stmt.where(Visit.created_at < until)
    stmt = stmt.order_by(Visit.created_at.desc(), Visit.id.desc())
    page = envelope(list(db.session.scalars(page_of(stmt, limit, offset))), limit, offset)
    visits: list[Visit] = page["items"]
    page["items"] = present_many(visits, actor.circle_id)
    for visit in visits:
        log_access(actor.circle_id, actor.id, "visit", visit.id, now, action="list")
    db.session.commit()
    return page


@atomic
def itinerary(
    actor: User,
    doctor_id: int,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """A doctor's visits in chronological order over a window (default: the current shift).

    The default window runs from the start of the doctor's shift covering ``now``
    (or ``now`` - 12 h without one) to ``now`` + 12 h. When the window contains
    ``now`` the doctor's open visits are always included. Visits are ordered by
    check-in time, else ``arrive_by``, else creation. A doctor may read only their
    own itinerary (another is 404). Every visit returned is written to the access log.
    """
    not_found = NotFound(f"No doctor {doctor_id}.", code="doctor_not_found")
    if not is_id(doctor_id) or (actor.role == "doctor" and doctor_id != actor.id):
        raise not_found
    doctor = db.session.scalars(
        scoped(User, actor.circle_id).where(User.id == doctor_id, User.role == "doctor")
    ).first()
    if doctor is None:
        raise not_found

    v = Validator()
    tz = circle_timezone(actor)
    begin = check_instant(v, "start", start, tz)
    until = check_instant(v, "end", end, tz)
    v.raise_if_any()

    shift = db.session.scalars(
        scoped(Shift, actor.circle_id)
        .where(Shift.doctor_id == doctor.id, Shift.starts_at <= now, Shift.ends_at > now)
        .order_by(Shift.starts_at, Shift.id)
        .limit(1)
    ).first()
    if begin is None:
        begin = shift.starts_at if shift is not None else now - ITINERARY_SPAN
    if until is None:
        until = now + ITINERARY_SPAN
    if until <= begin:
        if end is not None:
            v.add("end", "Must be after start.")
        else:
            v.add("start", "Must be before the end of the window (now + 12 h).")
        v.raise_if_any()

    when = func.coalesce(Visit.checked_in_at, Visit.arrive_by, Visit.created_at)
    in_window = (when >= begin) & (when < until)
    condition = or_(in_window, Visit.status.in_(BUSY_STATES)) if begin <= now < until else in_window
    visits = list(
        db.session.scalars(
            scoped(Visit, actor.circle_id)
            .where(Visit.doctor_id == doctor.id, condition)
            .order_by(when, Visit.created_at, Visit.id)
        )
    )
    out = present_itinerary(doctor, begin, until, shift, visits)
    for visit in visits:
        log_access(actor.circle_id, actor.id, "visit", visit.id, now, action="itinerary")
    db.session.commit()
    return out
