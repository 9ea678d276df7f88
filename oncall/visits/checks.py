"""Input checks of the visit use cases.

Every check adds its problems to a :class:`~oncall.errors.Validator` under the
field's (dotted) name, so that a use case reports all of them at once. The limits
are the columns' sizes; the API's schemas use the same constants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from oncall.accounts.models import User
from oncall.core.clock import LocalTimeError, parse_instant
from oncall.core.paging import check_page
from oncall.core.patient import (
    ADDRESS_FIELDS,
    CALLER_RELATIONS,
    DWELLINGS,
    PATIENT_FIELDS,
    PREPARATION_FIELDS,
)
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

#: Maximum lengths of the patient, address and preparation text fields (the columns' sizes).
PATIENT_LIMITS = {"name": 160, "phone": 32, "usual_gp": 160}
ADDRESS_LIMITS = {
    "street": 160,
    "number": 16,
    "box": 16,
    "postcode": 12,
    "city": 80,
    "floor": 16,
    "access_notes": 2000,
}
MAX_AGE = 130
PREPARATION_FLAGS = tuple(f for f in PREPARATION_FIELDS if f != "caller_relation")


def is_id(value: Any, maximum: int = MAX_INT) -> bool:
    """True for a whole number (not a boolean) from 1 to ``maximum``."""
    return _whole(value) and 1 <= value <= maximum


def instant(v: Validator, field: str, value: Any, tz: str) -> datetime | None:
    """An input datetime as aware UTC (naive means circle local time); errors go to ``v``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        v.add(field, "Not a valid datetime.")
        return None
    try:
        return parse_instant(value, tz)
    except LocalTimeError as exc:
        v.add(field, str(exc))
    except (OverflowError, ValueError):
        v.add(field, "Out of the range of supported dates.")
    return None


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


def _check_bool(v: Validator, field: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        v.add(field, "Not a valid boolean.")


def _check_section(v: Validator, name: str, value: Any, allowed: Sequence[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        v.add(name, "Not a valid object.")
        return {}
    for key in value:
        if key not in allowed:
            v.add(f"{name}.{key}", "Unknown field.")
    return {k: value[k] for k in value if k in allowed}


def check_patient(v: Validator, data: Mapping[str, Any], now: datetime) -> None:
    """Field checks of the nested patient, address and preparation objects, and the reason."""
    patient = _check_section(v, "patient", data.get("patient"), PATIENT_FIELDS)
    for key, limit in PATIENT_LIMITS.items():
        check_text(v, f"patient.{key}", patient.get(key), limit)
    age = patient.get("age")
    if age is not None and not (_whole(age) and 0 <= age <= MAX_AGE):
        v.add("patient.age", f"Must be a whole number from 0 to {MAX_AGE}.")
    birth = patient.get("birth_date")
    if birth is not None:
        if not isinstance(birth, date) or isinstance(birth, datetime):
            v.add("patient.birth_date", "Not a valid date.")
        elif birth > now.date():
            v.add("patient.birth_date", "Must not be in the future.")

    address = _check_section(v, "address", data.get("address"), ADDRESS_FIELDS)
    for key, limit in ADDRESS_LIMITS.items():
        check_text(v, f"address.{key}", address.get(key), limit)
    dwelling = address.get("dwelling")
    if dwelling is not None and dwelling not in DWELLINGS:
        v.add("address.dwelling", f"Must be one of: {', '.join(DWELLINGS)}.")

    prep = _check_section(v, "preparation", data.get("preparation"), PREPARATION_FIELDS)
    relation = prep.get("caller_relation")
    if relation is not None and relation not in CALLER_RELATIONS:
        v.add("preparation.caller_relation", f"Must be one of: {', '.join(CALLER_RELATIONS)}.")
    for key in PREPARATION_FLAGS:
        _check_bool(v, f"preparation.{key}", prep.get(key))

    check_text(v, "reason", data.get("reason"), MAX_REASON)
    if "identity_verified" in data and not isinstance(data["identity_verified"], bool):
        v.add("identity_verified", "Not a valid boolean.")


def check_arrival(v: Validator, data: Mapping[str, Any], now: datetime, tz: str) -> datetime | None:
    """The arrival deadline from ``arrive_by`` or ``eta_minutes`` (not both), within 48 h."""
    has_arrive = data.get("arrive_by") is not None
    eta = data.get("eta_minutes")
    if has_arrive and eta is not None:
        v.add("arrive_by", "Give arrive_by or eta_minutes, not both.")
        v.add("eta_minutes", "Give arrive_by or eta_minutes, not both.")
        return None
    if has_arrive:
        arrive_by = instant(v, "arrive_by", data["arrive_by"], tz)
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
    begin = instant(v, "start", start, tz)
    until = instant(v, "end", end, tz)
    if begin is not None and until is not None and until <= begin:
        v.add("end", "Must be after start.")
    for field, value in (("limit", limit), ("offset", offset)):
        if not _whole(value):
            v.add(field, "Must be a whole number.")
    check_page(limit if _whole(limit) else 1, offset if _whole(offset) else 0, v)
    return states, begin, until
