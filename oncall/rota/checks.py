"""Checks of the rota use cases: roles, ids, zones, doctors, instants, lengths, overlaps.

Checks add their findings to a :class:`oncall.errors.Validator` so that a use case
reports every bad field at once; roles and overlaps raise at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from oncall.accounts.models import User
from oncall.circles.models import Zone
from oncall.core.clock import as_utc
from oncall.core.tenancy import scoped
from oncall.errors import Conflict, Forbidden, Validator
from oncall.extensions import db
from oncall.rota.models import Shift

#: Longest shift accepted.
MAX_SHIFT_LENGTH = timedelta(hours=48)
#: Largest id a PostgreSQL ``integer`` column holds.
MAX_ID = 2**31 - 1
NOTE_MAX_LENGTH = 200


def require_role(actor: User, roles: Sequence[str]) -> None:
    """Refuse (403 ``role_forbidden``) an actor whose role is not in ``roles``."""
    if actor.role not in roles:
        raise Forbidden(f"This needs the role {' or '.join(roles)}.", code="role_forbidden")


def is_id(value: Any) -> bool:
    """True for an int (not a bool) that an ``integer`` key can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def check_zone(v: Validator, actor: User, zone_id: Any) -> Zone | None:
    """The active zone of the actor's circle named by ``zone_id``, or None with the reason
    added to ``v``."""
    if zone_id is None:
        v.add("zone_id", "required")
        return None
    zone = (
        db.session.scalars(scoped(Zone, actor.circle_id).where(Zone.id == zone_id)).first()
        if is_id(zone_id)
        else None
    )
    if zone is None:
        v.add("zone_id", "no such zone in this circle")
        return None
    if not zone.active:
        v.add("zone_id", "this zone is not active")
        return None
    return zone


def check_doctor(v: Validator, actor: User, doctor_id: Any) -> User | None:
    """The doctor, row-locked so that overlap checks of one doctor run one at a time."""
    if doctor_id is None:
        v.add("doctor_id", "required")
        return None
    doctor = lock_doctor(actor.circle_id, doctor_id) if is_id(doctor_id) else None
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


def lock_doctor(circle_id: int, doctor_id: int) -> User | None:
    """The circle's user ``doctor_id`` locked ``FOR NO KEY UPDATE``, or None."""
    # FOR NO KEY UPDATE: serialises shift changes of one doctor without blocking
    # inserts elsewhere that merely reference the user.
    stmt = scoped(User, circle_id).where(User.id == doctor_id).with_for_update(key_share=True)
    return db.session.scalars(stmt).first()


def check_length(v: Validator, starts: datetime, ends: datetime, field: str) -> None:
    """Add to ``v`` (under ``field``) why ``[starts, ends)`` is not a valid shift length."""
    if ends <= starts:
        v.add(field, "the shift must end after it starts")
    elif ends - starts > MAX_SHIFT_LENGTH:
        hours = MAX_SHIFT_LENGTH.total_seconds() / 3600
        v.add(field, f"a shift lasts at most {hours:g} hours")


def check_note(v: Validator, note: Any) -> str | None:
    """The trimmed note (None if blank), or None with the reason added to ``v``."""
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


def check_no_overlap(
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
    stmt = scoped(Shift, circle_id).where(
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
