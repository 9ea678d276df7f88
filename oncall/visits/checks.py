"""Input checks of the visit use cases.

Every check adds its problems to a :class:`~oncall.errors.Validator` under the
field's (dotted) name, so that a use case reports all of them at once. The API's
schemas use the same limits. The patient, address and checklist follow the rules
of :func:`oncall.calls.checks.check_details`, the same as a call's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from oncall.accounts.models import User
from oncall.calls.checks import check_details, circle_today
from oncall.circles.models import Circle
from oncall.core.checks import check_instant
from oncall.core.paging import check_page
from oncall.core.patient import PatientColumns
from oncall.core.text import unstorable_reason
from oncall.errors import Validator
from oncall.visits.models import STATES

MAX_INT = 2**31 - 1
MAX_BIGINT = 2**63 - 1
ETA_MINUTES = (1, 240)
#: How far ahead an arrival deadline may be set.
MAX_ARRIVAL_AHEAD = timedelta(hours=48)
MAX_REASON = 2000
MAX_NOTE = 4000
MAX_UNASSIGN_REASON = 200
#: The expected length of a visit a doctor may give at check-in, in minutes.
EXPECTED_MINUTES = (1, 480)
#: How much longer a doctor may say a visit will take, in minutes, and the default.
EXTEND_MINUTES = (1, 240)
DEFAULT_EXTEND_MINUTES = 15
#: The longest code accepted with a check-in or check-out (codes are 4 to 8 digits).
MAX_CODE = 64


def is_id(value: Any, maximum: int = MAX_INT) -> bool:
    """True for a whole number (not a boolean) from 1 to ``maximum``."""
    return _whole(value) and 1 <= value <= maximum


def check_text(v: Validator, field: str, value: Any, limit: int, *, required: bool = False) -> None:
    """A storable string of at most ``limit`` characters (not blank when ``required``)."""
    if value is None:
        if required:
            v.add(field, "Missing data for required field.")
        return
    if not isinstance(value, str):
        v.add(field, "Not a valid string.")
    elif reason := unstorable_reason(value):
        v.add(field, reason)
    elif required and not value.strip():
        v.add(field, "Must not be blank.")
    elif len(value) > limit:
        v.add(field, f"Longer than maximum length {limit}.")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_patient(
    v: Validator,
    data: Mapping[str, Any],
    now: datetime,
    circle: Circle,
    current: PatientColumns | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The visit's nested patient, address and preparation, checked and cleaned by the
    rules calls follow too (:func:`oncall.calls.checks.check_details`), then the
    reason and the identity flag; returns the nested fields sent.

    ``circle`` gives today's date, the phone numbers' and postcodes' country;
    ``current`` is the call the visit is copied from (its age or birth date must
    agree with the ones given).
    """
    cleaned = check_details(
        v, data, today=circle_today(circle, now), country=circle.country, current=current
    )
    check_text(v, "reason", data.get("reason"), MAX_REASON)
    if "identity_verified" in data and not isinstance(data["identity_verified"], bool):
        v.add("identity_verified", "Not a valid boolean.")
    return cleaned


def check_arrival(v: Validator, data: Mapping[str, Any], now: datetime, tz: str) -> datetime | None:
    """The arrival deadline from ``arrive_by`` or ``eta_minutes`` (not both), within 48 h."""
    has_arrive = data.get("arrive_by") is not None
    eta = data.get("eta_minutes")
    if has_arrive and eta is not None:
        v.add("arrive_by", "Give arrive_by or eta_minutes, not both.")
        v.add("eta_minutes", "Give arrive_by or eta_minutes, not both.")
        return None
    if has_arrive:
        arrive_by = check_instant(v, "arrive_by", data["arrive_by"], tz)
        if arrive_by is not None and arrive_by <= now:
            v.add("arrive_by", "Must be after now.")
        elif arrive_by is not None and arrive_by > now + MAX_ARRIVAL_AHEAD:
            v.add("arrive_by", "Must be within 48 hours from now.")
        return arrive_by
    if eta is not None:
        low, high = ETA_MINUTES
        if not (_whole(eta) and low <= eta <= high):
            v.add("eta_minutes", f"Must be a whole number from {low} to {high}.")
            return None
        return now + timedelta(minutes=eta)
    return None


def check_minutes(
    v: Validator, field: str, value: Any, bounds: tuple[int, int]
) -> int | None:
    """A whole number of minutes within ``bounds``; None when absent or wrong."""
    if value is None:
        return None
    low, high = bounds
    if not (_whole(value) and low <= value <= high):
        v.add(field, f"Must be a whole number from {low} to {high}.")
        return None
    return int(value)


def check_location(v: Validator, location: Any) -> dict[str, float | None] | None:
    """A ``{lat, lon, accuracy}`` object, checked; None when absent."""
    if location is None:
        return None
    if not isinstance(location, Mapping):
        v.add("location", "Not a valid object.")
        return None
    for key in location:
        if key not in ("lat", "lon", "accuracy"):
            v.add(f"location.{key}", "Unknown field.")
    out: dict[str, float | None] = {}
    for key, low, high, required in (
        ("lat", -90.0, 90.0, True),
        ("lon", -180.0, 180.0, True),
        ("accuracy", 0.0, 1_000_000.0, False),
    ):
        value = location.get(key)
        if value is None:
            if required:
                v.add(f"location.{key}", "Missing data for required field.")
            out[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            v.add(f"location.{key}", "Not a valid number.")
        elif not low <= value <= high:
            v.add(f"location.{key}", f"Must be between {low:g} and {high:g}.")
        else:
            out[key] = float(value)
    return out


def doctor_problem(user: User | None) -> str | None:
    """Why ``user`` cannot be given a visit, or None for an active doctor."""
    if user is None or user.role != "doctor":
        return "No such doctor in this circle."
    if not user.active:
        return "This doctor is not active."
    return None


def check_doctor(v: Validator, user: User | None) -> None:
    """``doctor_id`` must name an active doctor of the circle (``user`` as read from it)."""
    problem = doctor_problem(user)
    if problem is not None:
        v.add("doctor_id", problem)


def check_list_query(
    v: Validator,
    *,
    doctor_id: Any,
    zone_id: Any,
    status: str | Sequence[str] | None,
    start: Any,
    end: Any,
    limit: int,
    offset: int,
    tz: str,
) -> tuple[list[str], datetime | None, datetime | None]:
    """The filters of the visit list, checked: the states and the ``[start, end)`` window in UTC."""
    if doctor_id is not None and not is_id(doctor_id):
        v.add("doctor_id", "Not a valid id.")
    if zone_id is not None and not is_id(zone_id):
        v.add("zone_id", "Not a valid id.")
    states = [status] if isinstance(status, str) else list(status or [])
    if any(state not in STATES for state in states):
        v.add("status", f"Must be one of: {', '.join(STATES)}.")
    begin = check_instant(v, "start", start, tz)
    until = check_instant(v, "end", end, tz)
    if begin is not None and until is not None and until <= begin:
        v.add("end", "Must be after start.")
    for field, value in (("limit", limit), ("offset", offset)):
        if not _whole(value):
            v.add(field, "Must be a whole number.")
    check_page(limit if _whole(limit) else 1, offset if _whole(offset) else 0, v)
    return states, begin, until
