"""Checks and normal forms of account fields (also used by the circles domain).

Checks add their findings to a :class:`oncall.errors.Validator`, so that a use case
reports every bad field at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import phonenumbers
from marshmallow import ValidationError
from marshmallow.validate import Email
from sqlalchemy import select

from oncall.accounts.models import LANGUAGES, ROLES, User
from oncall.errors import Validator
from oncall.extensions import db

PASSWORD_MIN = 10
PASSWORD_MAX = 1024

#: Editable text fields of a user and their column lengths.
_TEXT_LIMITS = {
    "name": 120,
    "vehicle_make": 60,
    "vehicle_colour": 40,
    "vehicle_plate": 20,
}
_EMAIL_MAX = 254
_email_validator = Email()
#: A doctor's check-in and duress codes: digits only, this many of them.
CODE_LENGTH = (4, 8)
_DIGITS = frozenset("0123456789")


def normalise_phone(raw: str, country: str) -> str:
    """``raw`` as E.164, national numbers read in ``country``; ValueError if not a number."""
    try:
        number = phonenumbers.parse(raw, (country or "").upper() or None)
    except phonenumbers.NumberParseException:
        raise ValueError("Not a valid phone number.") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("Not a valid phone number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    """The login form of an email: trimmed and lower-cased."""
    return raw.strip().lower()


def valid_email(email: str) -> bool:
    """True for a well-formed address that fits the column."""
    try:
        _email_validator(email)
    except ValidationError:
        return False
    return len(email) <= _EMAIL_MAX


def clean_text(value: Any) -> str | None:
    """``value`` as trimmed text; None when absent or blank."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def reject_unknown(v: Validator, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Name every key of ``data`` that is not in ``allowed``."""
    for key in data:
        if key not in allowed:
            v.add(str(key), "Unknown field.")


def validate_user(
    v: Validator,
    data: Mapping[str, Any],
    country: str,
    *,
    creating: bool,
    user: User | None = None,
) -> dict[str, Any]:
    """Check the user fields present in ``data``; return the cleaned column values.

    Every error is added to ``v`` under the field's name; ``password`` is kept in
    clear for the caller to hash.
    """
    clean: dict[str, Any] = {}
    if creating:
        for required in ("email", "name", "role", "password"):
            if data.get(required) in (None, ""):
                v.add(required, "Missing data for required field.")
    if "email" in data and data["email"] not in (None, ""):
        email = normalise_email(str(data["email"]))
        if not valid_email(email):
            v.add("email", "Not a valid email address.")
        else:
            clash = select(User.id).where(User.email == email)
            if user is not None:
                clash = clash.where(User.id != user.id)
            if db.session.scalars(clash).first() is not None:
                v.add("email", "This email is already used by another account.")
            else:
                clean["email"] = email
    elif "email" in data and not creating:
        v.add("email", "Field may not be null.")
    for name, limit in _TEXT_LIMITS.items():
        if name not in data:
            continue
        text = clean_text(data[name])
        if name == "name" and text is None:
            if "name" not in v.errors:
                v.add("name", "Must not be empty.")
            continue
        if text is not None and len(text) > limit:
            v.add(name, f"Longer than maximum length {limit}.")
            continue
        clean[name] = text
    if "role" in data and data["role"] not in (None, ""):
        if v.check(data["role"] in ROLES, "role", f"Must be one of: {', '.join(ROLES)}."):
            clean["role"] = data["role"]
    elif "role" in data and not creating:
        v.add("role", "Field may not be null.")
    if "language" in data and v.check(
        data["language"] in LANGUAGES, "language", f"Must be one of: {', '.join(LANGUAGES)}."
    ):
        clean["language"] = data["language"]
    if "phone" in data:
        raw = clean_text(data["phone"])
        if raw is None:
            clean["phone"] = None
        else:
            try:
                clean["phone"] = normalise_phone(raw, country)
            except ValueError as exc:
                v.add("phone", str(exc))
    if "password" in data and data["password"] not in (None, ""):
        password = str(data["password"])
        if len(password) < PASSWORD_MIN:
            v.add("password", f"Must be at least {PASSWORD_MIN} characters.")
        elif len(password) > PASSWORD_MAX:
            v.add("password", f"Must be at most {PASSWORD_MAX} characters.")
        else:
            clean["password"] = password
    elif "password" in data and not creating:
        v.add("password", "Field may not be null.")
    return clean


def check_codes(v: Validator, data: Mapping[str, Any]) -> tuple[str, str] | None:
    """A doctor's new ``checkin_code`` and ``duress_code``, or None with the problems in ``v``.

    Both are required, 4 to 8 digits (ASCII only: the phone's keypad sends those),
    and they must differ: the duress code must never be taken for the check-in code.
    """
    low, high = CODE_LENGTH
    codes: dict[str, str] = {}
    for field in ("checkin_code", "duress_code"):
        value = data.get(field)
        if value is None or value == "":
            v.add(field, "Missing data for required field.")
        elif not isinstance(value, str) or not set(value) <= _DIGITS:
            v.add(field, "Digits only.")
        elif not low <= len(value) <= high:
            v.add(field, f"Must be {low} to {high} digits long.")
        else:
            codes[field] = value
    if len(codes) < 2:
        return None
    if codes["checkin_code"] == codes["duress_code"]:
        v.add("duress_code", "Must differ from the check-in code.")
        return None
    return codes["checkin_code"], codes["duress_code"]
