"""Phone numbers: what callers and dispatchers type, turned into E.164.

A national number is read with the circle's country (``0470 12 34 56`` in a
Belgian circle is ``+32470123456``); a number written with its international
prefix (``+33 ...`` or ``0033 ...``) keeps its own country whatever the circle.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

#: What a telephone system sends when the caller withheld their number.
WITHHELD = frozenset(
    {"", "anonymous", "withheld", "private", "restricted", "unknown", "unavailable", "hidden"}
)
#: Longest raw input read at all (a formatted international number fits easily).
MAX_RAW_LENGTH = 32

# Digits and the separators people type: spaces, dots, slashes, dashes, brackets;
# one optional leading plus.
_ALLOWED = re.compile(r"^\+?[0-9 ./()\-]+$")

_POSSIBLE_REASONS = {
    ValidationResult.TOO_SHORT: "is too short",
    ValidationResult.TOO_LONG: "is too long",
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
    ValidationResult.INVALID_LENGTH: "has the wrong number of digits",
}


class InvalidNumber(ValueError):
    """A phone number that cannot be read; ``reason`` says why, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_withheld(raw: str | None) -> bool:
    """True when the telephone system gave no usable caller id (empty, anonymous...)."""
    return raw is None or raw.strip().lower() in WITHHELD


def normalise_number(raw: str, country: str) -> str:
    """The E.164 form of ``raw`` read in ``country``, or :class:`InvalidNumber`.

    Accepts national numbers (``02/524.98.89``), ``+CC`` and ``00CC`` prefixes and
    the usual separators. Refuses letters, extensions, too short or too long
    numbers and numbers that no operator of that country could hand out.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidNumber("is empty")
    if len(text) > MAX_RAW_LENGTH:
        raise InvalidNumber(f"is longer than {MAX_RAW_LENGTH} characters")
    if not _ALLOWED.match(text):
        raise InvalidNumber(
            "may contain only digits, spaces, '.', '/', '-', brackets and a leading '+'"
        )
    digits = re.sub(r"\D", "", text)
    if len(digits) < 6:
        raise InvalidNumber("is too short")
    region = (country or "").upper()
    if not text.startswith("+") and region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidNumber("needs an international prefix (+CC)")
    try:
        parsed = phonenumbers.parse(
            text, region if region in phonenumbers.SUPPORTED_REGIONS else None
        )
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidNumber("has an unknown country code") from None
        if exc.error_type in (
            NumberParseException.TOO_SHORT_NSN,
            NumberParseException.TOO_SHORT_AFTER_IDD,
        ):
            raise InvalidNumber("is too short") from None
        if exc.error_type == NumberParseException.TOO_LONG:
            raise InvalidNumber("is too long") from None
        raise InvalidNumber("is not a phone number") from None
    possible = phonenumbers.is_possible_number_with_reason(parsed)
    if possible not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        raise InvalidNumber(_POSSIBLE_REASONS.get(possible, "is not a possible number"))
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber("is not a valid number for its country")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def try_normalise(raw: str | None, country: str) -> str | None:
    """E.164 of ``raw``, or None when it is withheld or cannot be read (never raises)."""
    if is_withheld(raw):
        return None
    try:
        return normalise_number(raw or "", country)
    except InvalidNumber:
        return None
