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
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from oncall.accounts.models import User
from oncall.circles.models import Circle, Zone
from oncall.core.clock import LocalTimeError, as_utc, localize, parse_instant, to_local
from oncall.core.tenancy import get_in_circle
from oncall.core.timeline import record
from oncall.errors import Conflict, Forbidden, NotFound, Validator
from oncall.extensions import db
from oncall.rota.models import Shift

logger = logging.getLogger(__name__)

#: Longest shift accepted.
MAX_SHIFT_LENGTH = timedelta(hours=48)
#: Most days one call to :func:`plan_shifts` may plan.
MAX_PLAN_DAYS = 366
#: Largest id a PostgreSQL ``integer`` column holds.
MAX_ID = 2**31 - 1
NOTE_MAX_LENGTH = 200
#: Instants outside these years are refused as typing mistakes.
MIN_YEAR, MAX_YEAR = 2000, 2100

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
        select(Shift)
        .join(User, User.id == Shift.doctor_id)
        .where(
            Shift.circle_id == circle_id,
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
    _require_role(actor, ON_DUTY_READERS)
    tz = circle_timezone(actor.circle_id)
    zone = _zone_or_404(actor, zone_id)
    v = Validator()
    instant = _instant(v, "at", at, tz, required=True)
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
) -> list[ShiftInfo]:
    """Shifts of the actor's circle overlapping ``[start, end)``, by start then id.

    Filters are optional; naive bounds are local time. A doctor sees only their
    own shifts (asking for another doctor's is :class:`NotFound`), as is a zone
    or doctor of another circle.
    """
    tz = circle_timezone(actor.circle_id)
    v = Validator()
    start_at = _instant(v, "start", start, tz)
    end_at = _instant(v, "end", end, tz)
    if start_at is not None and end_at is not None and end_at <= start_at:
        v.add("end", "must be after start")
    v.raise_if_any()

    if zone_id is not None:
        _zone_or_404(actor, zone_id)
    if actor.role == "doctor":
        if doctor_id is not None and doctor_id != actor.id:
            raise NotFound(f"No doctor {doctor_id}.", code="doctor_not_found")
        doctor_id = actor.id
    elif doctor_id is not None:
        _user_or_404(actor, doctor_id)

    stmt = select(Shift).where(Shift.circle_id == actor.circle_id)
    if zone_id is not None:
        stmt = stmt.where(Shift.zone_id == zone_id)
    if doctor_id is not None:
        stmt = stmt.where(Shift.doctor_id == doctor_id)
    if start_at is not None:
        stmt = stmt.where(Shift.ends_at > start_at)
    if end_at is not None:
        stmt = stmt.where(Shift.starts_at < end_at)
    stmt = stmt.order_by(Shift.starts_at, Shift.id)
    return [ShiftInfo.of(s, tz) for s in db.session.scalars(stmt)]


# --------------------------------------------------------------------------- changes


def create_shift(actor: User, data: Mapping[str, Any], now: datetime) -> ShiftInfo:
    """Create one shift after checking every field; nothing is written on any error.

    ``data``: ``zone_id``, ``doctor_id``, ``starts_at``, ``ends_at`` (aware, or
    naive local time of the circle) and an optional ``note``.
    """
    _require_role(actor, ROTA_EDITORS)
    now = as_utc(now)
    with _transaction():
        tz = circle_timezone(actor.circle_id)
        v = Validator()
        zone = _check_zone(v, actor, data.get("zone_id"))
        doctor = _check_doctor(v, actor, data.get("doctor_id"))
        starts = _instant(v, "starts_at", data.get("starts_at"), tz, required=True)
        ends = _instant(v, "ends_at", data.get("ends_at"), tz, required=True)
        if starts is not None and ends is not None:
            _check_length(v, starts, ends, "ends_at")
        if ends is not None and ends <= now:
            v.add("ends_at", "the shift has already ended; the rota keeps only what is planned")
        note = _check_note(v, data.get("note"))
        v.raise_if_any()
        assert zone is not None
        assert doctor is not None
        assert starts is not None
        assert ends is not None

        _check_no_overlap(actor.circle_id, zone.id, doctor.id, [(starts, ends)])
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
    _require_role(actor, ROTA_EDITORS)
    now = as_utc(now)
    with _transaction():
        tz = circle_timezone(actor.circle_id)
        shift = _shift_or_404(actor, shift_id, lock=True)
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
            zone = _check_zone(v, actor, data["zone_id"])
            zone_id = zone.id if zone else zone_id
        if "doctor_id" in data and data["doctor_id"] != shift.doctor_id:
            doctor = _check_doctor(v, actor, data["doctor_id"])
            doctor_id = doctor.id if doctor else doctor_id
        starts, ends = shift.starts_at, shift.ends_at
        times_ok = True
        if "starts_at" in data:
            parsed = _instant(v, "starts_at", data["starts_at"], tz, required=True)
            times_ok = parsed is not None
            starts = parsed or starts
        if "ends_at" in data:
            parsed = _instant(v, "ends_at", data["ends_at"], tz, required=True)
            times_ok = times_ok and parsed is not None
            ends = parsed or ends
        if times_ok and ("starts_at" in data or "ends_at" in data):
            _check_length(v, starts, ends, "ends_at" if "ends_at" in data else "starts_at")
            if not started and ends <= now:
                v.add(
                    "ends_at" if "ends_at" in data else "starts_at",
                    "the shift would have already ended; the rota keeps only what is planned",
                )
        note = _check_note(v, data["note"]) if "note" in data else shift.note
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
            _lock_doctor(actor.circle_id, doctor_id)
            _check_no_overlap(
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
    _require_role(actor, ROTA_EDITORS)
    now = as_utc(now)
    with _transaction():
        shift = _shift_or_404(actor, shift_id, lock=True)
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
    starts_at = _strict_local(datetime.combine(day, start), zone)
    ends_at = _strict_local(datetime.combine(end_day, end), zone)
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
    _require_role(actor, ROTA_EDITORS)
    now = as_utc(now)
    with _transaction():
        tz = circle_timezone(actor.circle_id)
        v = Validator()
        zone = _check_zone(v, actor, zone_id)
        doctor = _check_doctor(v, actor, doctor_id)
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
            _check_length(v, starts, ends, field)
            if ends <= now:
                v.add(field, "the shift has already ended; the rota keeps only what is planned")
            bounds.append((starts, ends))
        v.raise_if_any()
        assert zone is not None
        assert doctor is not None

        _check_no_overlap(actor.circle_id, zone.id, doctor.id, bounds)
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


def _require_role(actor: User, roles: Sequence[str]) -> None:
    if actor.role not in roles:
        raise Forbidden(f"This needs the role {' or '.join(roles)}.", code="role_forbidden")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def _zone_or_404(actor: User, zone_id: Any) -> Zone:
    if not _is_id(zone_id):
        raise NotFound(f"No zone {zone_id}.", code="zone_not_found")
    return get_in_circle(Zone, zone_id, actor.circle_id, what="zone")


def _user_or_404(actor: User, user_id: Any) -> User:
    if not _is_id(user_id):
        raise NotFound(f"No doctor {user_id}.", code="doctor_not_found")
    return get_in_circle(User, user_id, actor.circle_id, what="doctor")


def _shift_or_404(actor: User, shift_id: Any, *, lock: bool = False) -> Shift:
    if not _is_id(shift_id):
        raise NotFound(f"No shift {shift_id}.", code="shift_not_found")
    return get_in_circle(Shift, shift_id, actor.circle_id, what="shift", lock=lock)


def _users_by_id(circle_id: int, ids: set[int]) -> dict[int, User]:
    if not ids:
        return {}
    rows = db.session.scalars(select(User).where(User.circle_id == circle_id, User.id.in_(ids)))
    return {u.id: u for u in rows}


def _check_zone(v: Validator, actor: User, zone_id: Any) -> Zone | None:
    if zone_id is None:
        v.add("zone_id", "required")
        return None
    zone = (
        db.session.scalars(
            select(Zone).where(Zone.circle_id == actor.circle_id, Zone.id == zone_id)
        ).first()
        if _is_id(zone_id)
        else None
    )
    if zone is None:
        v.add("zone_id", "no such zone in this circle")
        return None
    if not zone.active:
        v.add("zone_id", "this zone is not active")
        return None
    return zone


def _check_doctor(v: Validator, actor: User, doctor_id: Any) -> User | None:
    """The doctor, row-locked so that overlap checks of one doctor run one at a time."""
    if doctor_id is None:
        v.add("doctor_id", "required")
        return None
    doctor = _lock_doctor(actor.circle_id, doctor_id) if _is_id(doctor_id) else None
    if doctor is None:
        v.add("doctor_id", "no such user in this circle")
        return None
    if doctor.role != "doctor":
        v.add("doctor_id", "this user is not a doctor")
        return None
    if not doctor.active:
        v.add("doctor_id", "this doctor is deactivated")
        return None
    return doctor


def _lock_doctor(circle_id: int, doctor_id: int) -> User | None:
    # FOR NO KEY UPDATE: serialises shift changes of one doctor without blocking
    # inserts elsewhere that merely reference the user.
    stmt = (
        select(User)
        .where(User.circle_id == circle_id, User.id == doctor_id)
        .with_for_update(key_share=True)
    )
    return db.session.scalars(stmt).first()


def _local_time_message(naive: datetime, zone: ZoneInfo) -> str:
    """Why ``naive`` cannot be read in ``zone`` without an offset, and what to do."""
    round_trip = naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
    if round_trip.replace(tzinfo=None) != naive:
        problem = "does not exist (clocks go forward)"
    else:
        problem = "happens twice (clocks go back)"
    return (
        f"{naive:%Y-%m-%d %H:%M} {problem} in {zone.key}; give a UTC offset "
        "(for example +01:00 or +02:00)"
    )


def _strict_local(naive: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time as UTC, or :class:`LocalTimeError` saying why not."""
    try:
        return localize(naive, zone).astimezone(UTC)
    except LocalTimeError:
        raise LocalTimeError(_local_time_message(naive, zone)) from None


def _instant(
    v: Validator, field: str, value: Any, tz: str, *, required: bool = False
) -> datetime | None:
    """An input datetime as aware UTC, or ``None`` with the reason added to ``v``."""
    if value is None:
        if required:
            v.add(field, "required")
        return None
    if not isinstance(value, datetime):
        v.add(field, "not a date and time")
        return None
    try:
        instant = parse_instant(value, tz)
    except LocalTimeError:
        v.add(field, _local_time_message(value, ZoneInfo(tz)))
        return None
    except (OverflowError, ValueError):
        v.add(field, "out of range")
        return None
    if not MIN_YEAR <= instant.year <= MAX_YEAR:
        v.add(field, f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
        return None
    return instant


def _check_length(v: Validator, starts: datetime, ends: datetime, field: str) -> None:
    if ends <= starts:
        v.add(field, "the shift must end after it starts")
    elif ends - starts > MAX_SHIFT_LENGTH:
        hours = MAX_SHIFT_LENGTH.total_seconds() / 3600
        v.add(field, f"a shift lasts at most {hours:g} hours")


def _check_note(v: Validator, note: Any) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        v.add("note", "not a string")
        return None
    note = note.strip()
    if len(note) > NOTE_MAX_LENGTH:
        v.add("note", f"at most {NOTE_MAX_LENGTH} characters")
        return None
    return note or None


def _check_no_overlap(
    circle_id: int,
    zone_id: int,
    doctor_id: int,
    bounds: list[tuple[datetime, datetime]],
    *,
    exclude_id: int | None = None,
) -> None:
    """:class:`Conflict` if the doctor would hold two overlapping shifts in the zone."""
    if not bounds:
        return
    ordered = sorted(bounds)
    for (_, prev_end), (next_start, _) in pairwise(ordered):
        if next_start < prev_end:
            raise Conflict(
                "Two of the planned shifts overlap.",
                code="shift_overlap",
                fields={"days": ["two planned shifts overlap"]},
            )
    stmt = select(Shift).where(
        Shift.circle_id == circle_id,
        Shift.zone_id == zone_id,
        Shift.doctor_id == doctor_id,
        Shift.starts_at < max(e for _, e in bounds),
        Shift.ends_at > min(s for s, _ in bounds),
    )
    if exclude_id is not None:
        stmt = stmt.where(Shift.id != exclude_id)
    for other in db.session.scalars(stmt.order_by(Shift.starts_at)):
        if any(s < other.ends_at and other.starts_at < e for s, e in bounds):
            raise Conflict(
                f"This doctor already has shift {other.id} in this zone from "
                f"{as_utc(other.starts_at).isoformat()} to {as_utc(other.ends_at).isoformat()}.",
                code="shift_overlap",
                fields={"doctor_id": [f"already on duty in this zone (shift {other.id})"]},
            )


def _snapshot(shift: Shift) -> dict[str, Any]:
    return {
        "zone_id": shift.zone_id,
        "doctor_id": shift.doctor_id,
        "starts_at": shift.starts_at,
        "ends_at": shift.ends_at,
    }


def _record(actor: User, shift: Shift, kind: str, now: datetime, **data: Any) -> None:
    record(actor.circle_id, "shift", shift.id, kind, now, actor.id, **data)
