"""Input and output schemas of the rota API."""

from __future__ import annotations

from typing import Any

from apiflask import Schema
from apiflask.fields import DateTime, Integer, List, Nested, String
from apiflask.validators import Length, Range

from oncall.core.paging import PageQuery, envelope_schema
from oncall.core.text import storable
from oncall.rota.checks import MAX_ID, NOTE_MAX_LENGTH

_LOCAL = (
    "ISO 8601. Without a UTC offset the time is read as local time of the circle; "
    "a local time skipped or repeated by a daylight-saving change must carry an offset."
)


def _id(**kw: Any) -> Integer:
    return Integer(strict=True, validate=Range(min=1, max=MAX_ID), **kw)


def _query_id(**kw: Any) -> Integer:
    return Integer(validate=Range(min=1, max=MAX_ID), **kw)


class ShiftIn(Schema):
    """A new shift."""

    zone_id = _id(required=True)
    doctor_id = _id(required=True, metadata={"description": "A doctor of the circle."})
    starts_at = DateTime(required=True, metadata={"description": _LOCAL})
    ends_at = DateTime(
        required=True, metadata={"description": _LOCAL + " At most 48 hours after starts_at."}
    )
    note = String(
        load_default=None, allow_none=True, validate=[Length(max=NOTE_MAX_LENGTH), storable]
    )


class ShiftPatch(Schema):
    """Changes to a shift; only the fields given change (an empty body changes nothing)."""

    zone_id = _id()
    doctor_id = _id()
    starts_at = DateTime(metadata={"description": _LOCAL})
    ends_at = DateTime(metadata={"description": _LOCAL})
    note = String(allow_none=True, validate=[Length(max=NOTE_MAX_LENGTH), storable])


class ShiftQuery(PageQuery):
    """Filters of the shift list; a shift is listed if it overlaps [start, end)."""

    zone_id = _query_id()
    doctor_id = _query_id()
    start = DateTime(metadata={"description": _LOCAL})
    end = DateTime(metadata={"description": _LOCAL})


class ShiftOut(Schema):
    """A shift: UTC bounds and the same bounds in the circle's time zone."""

    id = Integer(required=True)
    zone_id = Integer(required=True)
    doctor_id = Integer(required=True)
    starts_at = DateTime(required=True, metadata={"description": "UTC."})
    ends_at = DateTime(required=True, metadata={"description": "UTC."})
    starts_at_local = DateTime(
        required=True, metadata={"description": "The circle's local time, with its offset."}
    )
    ends_at_local = DateTime(
        required=True, metadata={"description": "The circle's local time, with its offset."}
    )
    note = String(required=True, allow_none=True)


ShiftPage = envelope_schema(ShiftOut, "ShiftPage")


class OnDutyQuery(Schema):
    """Which zone, and when (default: now)."""

    zone = _query_id(required=True)
    at = DateTime(metadata={"description": _LOCAL + " Default: now."})


class OnDutyDoctor(Schema):
    """A doctor on duty and the shift that puts them there."""

    shift_id = Integer(required=True)
    doctor_id = Integer(required=True)
    name = String(required=True)
    phone = String(required=True, allow_none=True)
    starts_at = DateTime(required=True)
    ends_at = DateTime(required=True)


class OnDutyOut(Schema):
    """Who is on duty in a zone at an instant."""

    zone_id = Integer(required=True)
    at = DateTime(required=True, metadata={"description": "UTC."})
    doctors = List(Nested(OnDutyDoctor), required=True)
