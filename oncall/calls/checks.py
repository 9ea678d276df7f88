"""Checks of the call-log use cases: roles, input datetimes, numbers and call details.

Every check adds its findings to a :class:`oncall.errors.Validator` (or raises a
:class:`DomainError` for roles), so that a use case reports all bad fields at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from oncall.accounts.models import User
from oncall.calls.models import OUTCOMES, Call
from oncall.calls.numbers import InvalidNumber, normalise_number
from oncall.circles.models import Circle
from oncall.core.clock import to_local
from oncall.core.patient import MAX_AGE, PatientColumns
from oncall.core.patient_schemas import load_details
from oncall.errors import Forbidden, NotFound, Validator
from oncall.extensions import db

#: Roles that may read the call log; roles that may write it.
READ_ROLES = frozenset({"dispatcher", "coordinator", "admin"})
WRITE_ROLES = frozenset({"dispatcher", "admin"})

_POSTCODES = {
    "BE": (re.compile(r"^\d{4}$"), "4 digits"),
    "FR": (re.compile(r"^\d{5}$"), "5 digits"),
}
_OTHER_POSTCODE = (re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{1,9}$"), "2 to 10 letters or digits")


def check_role(actor: User, roles: Iterable[str]) -> None:
    """Refuse (403 ``role_forbidden``) an actor whose role is not in ``roles``."""
    allowed = frozenset(roles)
    if actor.role not in allowed:
        raise Forbidden(
            f"This needs the role {' or '.join(sorted(allowed))}.", code="role_forbidden"
        )


def circle_of(actor: User) -> Circle:
    """The actor's circle."""
    circle = db.session.get(Circle, actor.circle_id)
    if circle is None:  # pragma: no cover - a user always belongs to a circle
        raise NotFound("No such circle.", code="circle_not_found")
    return circle


def blank_to_none(value: Any) -> Any:
    """``value``, or None for a blank string."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def number_error(exc: InvalidNumber) -> str:
    """The field message for a phone number that cannot be read."""
    return f"This phone number {exc.reason}."


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def check_details(
    v: Validator,
    data: Mapping[str, Any],
    *,
    today: date,
    country: str | None,
    current: PatientColumns | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The nested patient, address and preparation of ``data``, checked and cleaned: the
    rules shared by calls and visits. Returns only the fields sent.

    ``today`` is the circle's local date; ``current`` the row the fields will be written
    on (or copied from), whose age or birth date must agree with the new ones. With the
    circle's ``country`` the phone number is stored as E.164 and the postcode must have
    that country's form; a blank phone number or postcode clears it. Errors name the
    nested field (``patient.birth_date``, ``address.postcode``...).
    """
    patient, address, prep = load_details(v, data)

    birth_ok = True
    birth = patient.get("birth_date")
    if birth is not None:
        if birth > today:
            birth_ok = v.check(False, "patient.birth_date", "Must not be in the future.")
        elif birth.year < today.year - MAX_AGE:
            birth_ok = v.check(False, "patient.birth_date", f"Is more than {MAX_AGE} years ago.")
    if "phone" in patient and country is not None:
        phone = blank_to_none(patient["phone"])
        if phone is not None:
            try:
                phone = normalise_number(phone, country)
            except InvalidNumber as exc:
                v.add("patient.phone", number_error(exc))
        patient["phone"] = phone

    # Age and birth date, as they will be after this change, must agree.
    age = patient.get("age", current.patient_age if current else None)
    birth_after = patient.get("birth_date", current.patient_birth_date if current else None)
    if (
        birth_ok
        and age is not None
        and birth_after is not None
        and _age_on(birth_after, today) != age
    ):
        for name in ("age", "birth_date"):
            if name in patient:
                v.add(f"patient.{name}", "Age and birth date disagree.")

    if "postcode" in address and country is not None:
        postcode = blank_to_none(address["postcode"])
        if postcode is not None:
            postcode = postcode.strip()
            pattern, words = _POSTCODES.get(country.upper(), _OTHER_POSTCODE)
            v.check(bool(pattern.match(postcode)), "address.postcode", f"Must be {words}.")
        address["postcode"] = postcode
    return patient, address, prep


def circle_today(circle: Circle, now: datetime) -> date:
    """Today's date in the circle's time zone."""
    return to_local(now, circle.timezone).date()


def validate_details(
    data: Mapping[str, Any],
    circle: Circle,
    now: datetime,
    v: Validator,
    current: Call | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Check a call's outcome and its nested patient, address and preparation input
    (see :func:`check_details`); return cleaned copies of the nested parts."""
    outcome = data.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        v.add("outcome", f"Must be one of: {', '.join(OUTCOMES)}.")
    return check_details(
        v, data, today=circle_today(circle, now), country=circle.country, current=current
    )
