"""Text the database can keep.

PostgreSQL refuses NUL characters in text and no encoding holds a lone surrogate:
such input must be a 422 on its field, never a server error.
"""

from __future__ import annotations

from marshmallow import ValidationError

NUL_MESSAGE = "Must not contain NUL characters."
UNICODE_MESSAGE = "Must be valid Unicode text."


def unstorable_reason(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None when it can."""
    if "\x00" in value:
        return NUL_MESSAGE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return UNICODE_MESSAGE
    return None


def storable(value: str) -> None:
    """A marshmallow validator: refuse text the database cannot keep."""
    reason = unstorable_reason(value)
    if reason:
        raise ValidationError(reason)
