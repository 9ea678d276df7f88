"""Rota use cases: shifts and who is on duty.

Instants are stored in UTC. An input datetime without an offset is a wall-clock
time of the circle's time zone; a time skipped (spring) or repeated (autumn) by a
daylight-saving change is refused with a request for an offset, never guessed.

Rules of the rota:

* a shift lasts more than zero and at most 48 hours;
* two doctors may be on duty in the same zone at once, but one doctor may not
  hold two overlapping shifts in the same zone (409 ``shift_overlap``);
* the rota is a record: a shift that has ended can be neither edited nor deleted
  (409 ``shift_in_past``); a shift in progress keeps its zone, doctor and start
  and may only be ended earlier or later, or have its note changed; it cannot be
  deleted (409 ``shift_started``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from oncall.accounts.models import User
from oncall.circles.models import Circle, Zone
from oncall.core.checks import MAX_YEAR, MIN_YEAR, check_instant
from oncall.core.clock import LocalTimeError, as_utc, localize, to_local
from oncall.core.paging import DEFAULT_LIMIT, check_page, envelope, page_of
from oncall.core.tenancy import get_in_circle, scoped
from oncall.core.timeline import record
from oncall.errors import Conflict, NotFound, Validator
from oncall.extensions import db
from oncall.rota.checks import (
    MAX_ID,
    MAX_SHIFT_LENGTH,
    NOTE_MAX_LENGTH,
    check_doctor,
    check_length,
    check_no_overlap,
    check_note,
    check_zone,
    lock_doctor,
    require_role,
)
from oncall.rota.models import Shift

logger = logging.getLogger(__name__)

#: Most days one call to :func:`plan_shifts` may plan.
MAX_PLAN_DAYS = 366

ROTA_EDITORS = ("admin",)
ON_DUTY_READERS = ("admin", "dispatcher", "coordinator")

_SHIFT_FIELDS = ("zone_id", "doctor_id", "starts_at", "ends_at", "note")
_FROZEN_ONCE_STARTED = ("zone_id", "doctor_id", "starts_at")


@dataclass(frozen=True)
class ShiftInfo:
    """A shift as shown to users: UTC bounds and the same bounds in the circle's time zone."""

    id: int
    zone_id: int
    doctor_id: int
    starts_at: datetime
    ends_at: datetime
    starts_at_local: datetime
    ends_at_local: datetime
    note: str | None

    @classmethod
    def of(cls, shift: Shift, tz: str) -> ShiftInfo:
        """Describe ``shift`` with local times in ``tz``."""
        return cls(
            id=shift.id,
            zone_id=shift.zone_id,
            doctor_id=shift.doctor_id,
            starts_at=as_utc(shift.starts_at),
            ends_at=as_utc(shift.ends_at),
            starts_at_local=to_local(shift.starts_at, tz),
            ends_at_local=to_local(shift.ends_at, tz),
            note=shift.note,
        )


# --------------------------------------------------------------------------- queries


def on_duty(circle_id: int, zone_id: int, at: datetime) -> list[Shift]:
    """Shifts of active doctors covering ``zone_id`` at instant ``at``.

    A shift covers ``starts_at <= at < ends_at``. Ordered by start, then id.
    """
    at = as_utc(at)
    stmt = (
        scoped(Shift, circle_id)
        .join(User, User.id == Shift.doctor_id)
        .where(
            Shift.zone_id == zone_id,
            Shift.starts_at <= at,
            Shift.ends_at > at,
            User.active.is_(True),
        )
        .order_by(Shift.starts_at, Shift.id)
    )
    return list(db.session.scalars(stmt))


def who_is_on_duty(actor: User, zone_id: int, at: datetime) -> dict[str, Any]:
    """The doctors on duty in a zone of the actor's circle at ``at`` (naive: local time).

    Returns ``{zone_id, at, doctors: [{shift_id, doctor_id, name, phone, starts_at,
    ends_at}]}``; a zone of another circle is :class:`NotFound`.
    """
    require_role(actor, ON_DUTY_READERS)
    tz = circle_timezone(actor.circle_id)
    zone = get_in_circle(Zone, zone_id, actor.circle_id, what="zone")
    v = Validator()
    instant = check_instant(v, "at", at, tz, required=True)
    v.raise_if_any()
    assert instant is not None
    shifts = on_duty(actor.circle_id, zone.id, instant)
    doctors = _users_by_id(actor.circle_id, {s.doctor_id for s in shifts})
    return {
        "zone_id": zone.id,
        "at": instant,
        "doctors": [
            {
                "shift_id": s.id,
                "doctor_id": s.doctor_id,
                "name": doctors[s.doctor_id].name,
                "phone": doctors[s.doctor_id].phone,
                "starts_at": as_utc(s.starts_at),
                "ends_at": as_utc(s.ends_at),
            }
            for s in shifts
        ],
    }


def list_shifts(
    actor: User,
    zone_id: int | None = None,
    doctor_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of the shifts of the actor's circle overlapping ``[start, end)``, by start
    then id.

    Filters are optional; naive bounds are local time. A doctor sees only their
    own shifts (asking for another doctor's is :class:`NotFound`), as is a zone
    or doctor of another circle.
    """
    tz = circle_timezone(actor.circle_id)
    v = Validator()
    start_at = check_instant(v, "start", start, tz)
    end_at = check_instant(v, "end", end, tz)
    if start_at is not None and end_at is not None and end_at <= start_at:
        v.add("end", "must be after start")
    check_page(limit, offset, v)
    v.raise_if_any()

    if zone_id is not None:
        get_in_circle(Zone, zone_id, actor.circle_id, what="zone")
    if actor.role == "doctor":
        if doctor_id is not None and doctor_id != actor.id:
            raise NotFound(f"No doctor {doctor_id}.", code="doctor_not_found")
        doctor_id = actor.id
    elif doctor_id is not None:
        get_in_circle(User, doctor_id, actor.circle_id, what="doctor")

    stmt = scoped(Shift, actor.circle_id)
    if zone_id is not None:
        stmt = stmt.where(Shift.zone_id == zone_id)
    if doctor_id is not None:
        stmt = stmt.where(Shift.doctor_id == doctor_id)
    if start_at is not None:
        stmt = stmt.where(Shift.ends_at > start_at)
    if end_at is not None:
        stmt = stmt.where(Shift.starts_at < end_at)
    stmt = stmt.order_by(Shift.starts_at, Shift.id)
    page = envelope(list(db.session.scalars(page_of(stmt, limit, offset))), limit, offset)
    page["items"] = [ShiftInfo.of(s, tz) for s in page["items"]]
    return page


# --------------------------------------------------------------------------- changes


def create_shift(actor: User, data: Mapping[str, Any], now: datetime) -> ShiftInfo:
    """Create one shift after checking every field; nothing is written on any error.

    ``data``: ``zone_id``, ``doctor_id``, ``starts_at``, ``ends_at`` (aware, or
    naive local time of the circle) and an optional ``note``.
    """
    require_role(actor, ROTA_EDITORS)
    now = as_utc(now)
    with _transaction():
        tz = circle_timezone(actor.circle_id)
        v = Validator()
        zone = check_zone(v, actor, data.get("zone_id"))
        doctor = check_doctor(v, actor, data.get("doctor_id"))
        starts = check_instant(v, "starts_at", data.get("starts_at"), tz, required=True)
        ends = check_instant(v, "ends_at", data.get("ends_at"), tz, required=True)
        if starts is not None and ends is not None:
            check_length(v, starts, ends, "ends_at")
        if ends is not None and ends <= now:
            v.add("ends_at", "the shift has already ended; the rota keeps only what is planned")
        note = check_note(v, data.get("note"))
        v.raise_if_any()
        assert zone is not None
        assert doctor is not None
        assert starts is not None
        assert ends is not None

        check_no_overlap(actor.circle_id, zone.id, doctor.id, [(starts, ends)])
        shift = Shift(
            circle_id=actor.circle_id,
            zone_id=zone.id,
            doctor_id=doctor.id,
            starts_at=starts,
            ends_at=ends,
            note=note,
        )
        db.session.add(shift)
        db.session.flush()
        _record(actor, shift, "shift_created", now, **_snapshot(shift))
        info = ShiftInfo.of(shift, tz)
    logger.info("shift %s created by user %s", info.id, actor.id)
    return info


def update_shift(actor: User, shift_id: int, data: Mapping[str, Any], now: datetime) -> ShiftInfo:
    """Change the fields present in ``data``; the same rules as creation apply.

    An ended shift is :class:`Conflict` ``shift_in_past``; a shift in progress
    keeps its zone, doctor and start (:class:`Conflict` ``shift_started``).
    """
    require_role(actor, ROTA_EDITORS)
    now = as_utc(now)
    with _transaction():
        tz = circle_timezone(actor.circle_id)
        shift = get_in_circle(Shift, shift_id, actor.circle_id, what="shift", lock=True)
        if shift.ends_at <= now:
            raise Conflict(
                f"Shift {shift.id} has ended; the rota keeps it as a record.",
                code="shift_in_past",
            )
        started = shift.starts_at <= now

        v = Validator()
        unknown = sorted(set(data) - set(_SHIFT_FIELDS))
        for name in unknown:
            v.add(name, "unknown field")
        zone_id, doctor_id = shift.zone_id, shift.doctor_id
        if "zone_id" in data and data["zone_id"] != shift.zone_id:
            zone = check_zone(v, actor, data["zone_id"])
            zone_id = zone.id if zone else zone_id
        if "doctor_id" in data and data["doctor_id"] != shift.doctor_id:
            doctor = check_doctor(v, actor, data["doctor_id"])
            doctor_id = doctor.id if doctor else doctor_id
        starts, ends = shift.starts_at, shift.ends_at
        times_ok = True
        if "starts_at" in data:
            parsed = check_instant(v, "starts_at", data["starts_at"], tz, required=True)
            times_ok = parsed is not None
            starts = parsed or starts
        if "ends_at" in data:
            parsed = check_instant(v, "ends_at", data["ends_at"], tz, required=True)
            times_ok = times_ok and parsed is not None
            ends = parsed or ends
        if times_ok and ("starts_at" in data or "ends_at" in data):
            check_length(v, starts, ends, "ends_at" if "ends_at" in data else "starts_at")
            if not started and ends <= now:
                v.add(
                    "ends_at" if "ends_at" in data else "starts_at",
                    "the shift would have already ended; the rota keeps only what is planned",
                )
        note = check_note(v, data["note"]) if "note" in data else shift.note
        v.raise_if_any()

        new = {"zone_id": zone_id, "doctor_id": doctor_id, "starts_at": starts, "ends_at": ends}
        if started:
            frozen = [f for f in _FROZEN_ONCE_STARTED if new[f] != getattr(shift, f)]
            if frozen:
                raise Conflict(
                    f"Shift {shift.id} has started: only its end and note may change. "
                    "End it now and create a new shift instead.",
                    code="shift_started",
                    fields={f: ["cannot change once the shift has started"] for f in frozen},
                )
        if any(new[f] != getattr(shift, f) for f in new):
            lock_doctor(actor.circle_id, doctor_id)
            check_no_overlap(
                actor.circle_id, zone_id, doctor_id, [(starts, ends)], exclude_id=shift.id
            )

        changes: dict[str, list[Any]] = {}
        for name, value in {**new, "note": note}.items():
            old = getattr(shift, name)
            if value != old:
                changes[name] = [old, value]
                setattr(shift, name, value)
        if changes:
            db.session.flush()
            _record(actor, shift, "shift_updated", now, changes=changes)
        info = ShiftInfo.of(shift, tz)
    logger.info("shift %s updated by user %s (%s)", info.id, actor.id, ", ".join(changes))
    return info


def delete_shift(actor: User, shift_id: int, now: datetime) -> None:
    """Delete a shift that has not started; ended or running shifts are :class:`Conflict`."""
    require_role(actor, ROTA_EDITORS)
    now = as_utc(now)
    with _transaction():
        shift = get_in_circle(Shift, shift_id, actor.circle_id, what="shift", lock=True)
        if shift.ends_at <= now:
            raise Conflict(
                f"Shift {shift.id} has ended; the rota keeps it as a record.",
                code="shift_in_past",
            )
        if shift.starts_at <= now:
            raise Conflict(
                f"Shift {shift.id} is in progress; end it by setting ends_at instead.",
                code="shift_started",
            )
        _record(actor, shift, "shift_deleted", now, **_snapshot(shift))
        db.session.delete(shift)
    logger.info("shift %s deleted by user %s", shift_id, actor.id)


def local_shift_times(tz: str, day: date, start: time, end: time) -> tuple[datetime, datetime]:
    """UTC bounds of a shift from ``start`` on ``day`` to ``end``, wall-clock times in ``tz``.

    ``end <= start`` means the shift ends the next day (a night shift 19:00 -> 08:00),
    so its real length follows the clocks: 19:00 Saturday to 08:00 Sunday in
    Brussels lasts 12 h when clocks go forward and 14 h when they go back.
    Raises :class:`LocalTimeError` if either bound does not exist or is ambiguous.
    """
    zone = ZoneInfo(tz)
    start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    end_day = day + timedelta(days=1) if end <= start else day
    starts_at = localize(datetime.combine(day, start), zone).astimezone(UTC)
    ends_at = localize(datetime.combine(end_day, end), zone).astimezone(UTC)
    return starts_at, ends_at


def plan_shifts(
    actor: User,
    zone_id: int,
    doctor_id: int,
    days: Sequence[date],
    start: time,
    end: time,
    now: datetime,
) -> list[ShiftInfo]:
    """Create one shift per day from ``start`` to ``end`` local time; all or nothing.

    Field errors name ``zone_id``, ``doctor_id``, ``days`` or ``days.<index>``; an
    overlap with an existing shift or between the planned ones is :class:`Conflict`.
    """
    require_role(actor, ROTA_EDITORS)
    now = as_utc(now)
    with _transaction():
        tz = circle_timezone(actor.circle_id)
        v = Validator()
        zone = check_zone(v, actor, zone_id)
        doctor = check_doctor(v, actor, doctor_id)
        if not days:
            v.add("days", "give at least one day")
        elif len(days) > MAX_PLAN_DAYS:
            v.add("days", f"at most {MAX_PLAN_DAYS} days at once")
        bounds: list[tuple[datetime, datetime]] = []
        for index, day in enumerate(days[: MAX_PLAN_DAYS + 1]):
            field = f"days.{index}"
            if not isinstance(day, date) or isinstance(day, datetime):
                v.add(field, "not a date")
                continue
            if not MIN_YEAR <= day.year <= MAX_YEAR:
                v.add(field, f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
                continue
            try:
                starts, ends = local_shift_times(tz, day, start, end)
            except LocalTimeError as exc:
                v.add(field, str(exc))
                continue
            check_length(v, starts, ends, field)
            if ends <= now:
                v.add(field, "the shift has already ended; the rota keeps only what is planned")
            bounds.append((starts, ends))
        v.raise_if_any()
        assert zone is not None
        assert doctor is not None

        check_no_overlap(actor.circle_id, zone.id, doctor.id, bounds)
        shifts = [
            Shift(
                circle_id=actor.circle_id,
                zone_id=zone.id,
                doctor_id=doctor.id,
                starts_at=s,
                ends_at=e,
            )
            for s, e in bounds
        ]
        db.session.add_all(shifts)
        db.session.flush()
        for shift in shifts:
            _record(actor, shift, "shift_created", now, **_snapshot(shift))
        infos = [ShiftInfo.of(s, tz) for s in shifts]
    logger.info("%d shifts planned by user %s", len(infos), actor.id)
    return infos


def circle_timezone(circle_id: int) -> str:
    """The IANA time zone of a circle (Europe/Brussels when unset)."""
    circle = db.session.get(Circle, circle_id)
    return (circle.timezone if circle else None) or "Europe/Brussels"


# --------------------------------------------------------------------------- helpers


@contextmanager
def _transaction() -> Iterator[None]:
    """Commit once at the end; roll back everything on any error."""
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def _users_by_id(circle_id: int, ids: set[int]) -> dict[int, User]:
    if not ids:
        return {}
    rows = db.session.scalars(scoped(User, circle_id).where(User.id.in_(ids)))
    return {u.id: u for u in rows}


def _snapshot(shift: Shift) -> dict[str, Any]:
    return {
        "zone_id": shift.zone_id,
        "doctor_id": shift.doctor_id,
        "starts_at": shift.starts_at,
        "ends_at": shift.ends_at,
    }


def _record(actor: User, shift: Shift, kind: str, now: datetime, **data: Any) -> None:
    record(actor.circle_id, "shift", shift.id, kind, now, actor.id, **data)


# The limits of ``checks`` stay importable from here.
__all__ = [
    "MAX_ID",
    "MAX_PLAN_DAYS",
    "MAX_SHIFT_LENGTH",
    "MAX_YEAR",
    "MIN_YEAR",
    "NOTE_MAX_LENGTH",
    "ON_DUTY_READERS",
    "ROTA_EDITORS",
    "ShiftInfo",
    "circle_timezone",
    "create_shift",
    "delete_shift",
    "list_shifts",
    "local_shift_times",
    "on_duty",
    "plan_shifts",
    "update_shift",
    "who_is_on_duty",
]
