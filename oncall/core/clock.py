"""Time: UTC inside, the circle's local time at the edges.

Domain functions take ``now`` as a parameter; :func:`utcnow` is used only at the
outermost layer (views, CLI, scheduler) to produce it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


class LocalTimeError(ValueError):
    """A naive local time that does not exist or is ambiguous in the time zone."""


def utcnow() -> datetime:
    """The current instant, timezone-aware in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """An aware datetime converted to UTC; naive values are refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime where an aware one is required")
    return value.astimezone(UTC)


def to_local(value: datetime, tz: str | ZoneInfo) -> datetime:
    """A UTC instant shown in a circle's time zone."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return as_utc(value).astimezone(zone)


def localize(naive: datetime, tz: str | ZoneInfo) -> datetime:
    """Attach a time zone to a naive local wall-clock time, strictly.

    Raises :class:`LocalTimeError` for a time skipped by a daylight-saving change
    (02:30 on the last Sunday of March in Brussels) and for a time that occurs
    twice (02:30 on the last Sunday of October): the caller must then give a UTC
    offset. Silently guessing would put a doctor on duty an hour off.
    """
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    first = naive.replace(tzinfo=zone, fold=0)
    # A time in the spring gap does not survive a round trip through UTC (checked
    # first: in the gap fold=0 and fold=1 also give different offsets).
    round_trip = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if round_trip != naive:
        raise LocalTimeError(
            f"{naive:%Y-%m-%d %H:%M} does not exist in {zone.key} (clocks go forward); "
            "give a UTC offset (for example +01:00 or +02:00)"
        )
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        raise LocalTimeError(
            f"{naive:%Y-%m-%d %H:%M} happens twice in {zone.key} (clocks go back); "
            "give a UTC offset (for example +01:00 or +02:00)"
        )
    return first


def parse_instant(value: datetime, tz: str | ZoneInfo) -> datetime:
    """An input datetime as UTC: aware values as given, naive ones as local time."""
    if value.tzinfo is None or value.utcoffset() is None:
        return localize(value, tz).astimezone(UTC)
    return value.astimezone(UTC)


def local_day_bounds(day: date, tz: str | ZoneInfo) -> tuple[datetime, datetime]:
    """UTC start and end of a local calendar day (23, 24 or 25 hours long)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    start = datetime.combine(day, datetime.min.time(), zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
    return start.astimezone(UTC), end.astimezone(UTC)
