"""Input checks shared by the domains' use cases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from oncall.core.clock import LocalTimeError, parse_instant
from oncall.errors import ValidationFailed, Validator
from oncall.extensions import db

#: Instants outside these years are refused as typing mistakes.
MIN_YEAR, MAX_YEAR = 2000, 2100


def check_instant(
    v: Validator, field: str, value: Any, tz: str, *, required: bool = False
) -> datetime | None:
    """An input datetime as aware UTC (naive means the circle's local time in ``tz``),
    or ``None`` with the reason added to ``v`` under ``field``."""
    if value is None:
        if required:
            v.add(field, "Missing data for required field.")
        return None
    if not isinstance(value, datetime):
        v.add(field, "Not a valid datetime.")
        return None
    try:
        instant = parse_instant(value, tz)
    except LocalTimeError as exc:
        v.add(field, str(exc))
        return None
    except (OverflowError, ValueError):
        v.add(field, "Is out of range.")
        return None
    if not MIN_YEAR <= instant.year <= MAX_YEAR:
        v.add(field, f"Must be between the years {MIN_YEAR} and {MAX_YEAR}.")
        return None
    return instant


@contextmanager
def unique_or_422(field: str, reason: str) -> Iterator[None]:
    """Turn a unique-constraint violation inside the block (another request took the
    value meanwhile) into a rolled-back transaction and a 422 naming ``field``."""
    try:
        yield
    except IntegrityError:
        db.session.rollback()
        raise ValidationFailed("Some fields are not valid.", fields={field: [reason]}) from None
