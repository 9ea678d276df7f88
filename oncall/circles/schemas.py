"""Input and output schemas of the circle setup API."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Email, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp

from oncall.circles.models import ALERT_KINDS, STEP_TARGETS, STOP_ON
from oncall.circles.services import (
    ARRIVAL_MINUTES,
    MAX_PROTOCOL_REFERENCE,
    REMINDER_MINUTES,
    VISIT_MINUTES,
)
from oncall.core.paging import PageQuery, envelope_schema
from oncall.core.text import storable

_ID = Range(min=1, max=2**31 - 1)
_SECONDS_MAX = 86_400


class CircleOut(Schema):
    id = Integer(required=True)
    name = String(required=True)
    timezone = String(required=True)
    country = String(required=True)
    arrival_minutes = Integer(
        required=True,
        metadata={"description": "Arrival deadline after assignment without the dispatcher's "
                  "estimate, in minutes."},
    )
    visit_minutes = Integer(
        required=True,
        metadata={"description": "Expected length of a visit: the departure deadline after "
                  "check-in, in minutes."},
    )
    reminder_minutes = Integer(
        required=True,
        metadata={"description": "The doctor is reminded this long before the departure "
                  "deadline, in minutes (0: never)."},
    )
    police_protocol_reference = String(
        required=True, allow_none=True,
        metadata={"description": "The circle's reference in its protocol with the police."},
    )
    created_at = DateTime(required=True)


class CircleUpdateIn(Schema):
    name = String(validate=[Length(min=1, max=120), storable])
    timezone = String(validate=[Length(min=1, max=64), storable],
                      metadata={"description": "An IANA time zone, e.g. Europe/Brussels."})
    country = String(validate=Regexp(r"^[A-Za-z]{2}$", error="Must be two letters."),
                     metadata={"description": "ISO 3166 alpha-2, e.g. BE."})
    arrival_minutes = Integer(strict=True, validate=Range(*ARRIVAL_MINUTES))
    visit_minutes = Integer(strict=True, validate=Range(*VISIT_MINUTES))
    reminder_minutes = Integer(
        strict=True, validate=Range(*REMINDER_MINUTES),
        metadata={"description": "Less than visit_minutes; 0 for no reminder."},
    )
    police_protocol_reference = String(
        allow_none=True, validate=[Length(max=MAX_PROTOCOL_REFERENCE), storable],
        metadata={"description": "Null or empty to clear it."},
    )


class ZoneOut(Schema):
    id = Integer(required=True)
    name = String(required=True)
    code = String(allow_none=True)
    active = Boolean(required=True)


ZonePage = envelope_schema(ZoneOut, "ZonePage")


class ZoneQuery(PageQuery):
    """Paging of the zone list (by name)."""


class ZoneCreateIn(Schema):
    name = String(required=True, validate=[Length(min=1, max=120), storable])
    code = String(allow_none=True, validate=[Length(max=32), storable])
    active = Boolean()


class ZoneUpdateIn(Schema):
    name = String(validate=[Length(min=1, max=120), storable])
    code = String(allow_none=True, validate=[Length(max=32), storable])
    active = Boolean()


class PoliceContactOut(Schema):
    id = Integer(required=True)
    zone_id = Integer(allow_none=True)
    name = String(required=True)
    phone = String(allow_none=True)
    email = String(allow_none=True)
    webhook_url = String(allow_none=True)
    protocol_reference = String(allow_none=True)
    notes = String(allow_none=True)
    active = Boolean(required=True)


PoliceContactPage = envelope_schema(PoliceContactOut, "PoliceContactPage")


class PoliceContactQuery(PageQuery):
    zone_id = Integer(validate=_ID, metadata={"description": "Only this zone's own contacts."})


class _PoliceContactFields(Schema):
    zone_id = Integer(allow_none=True, validate=_ID,
                      metadata={"description": "A zone of the circle; null for circle-wide."})
    phone = String(allow_none=True, validate=[Length(max=32), storable])
    email = Email(allow_none=True, validate=[Length(max=254), storable])
    webhook_url = String(allow_none=True, validate=[Length(max=500), storable],
                         metadata={"description": "An https URL."})
    protocol_reference = String(allow_none=True, validate=[Length(max=120), storable])
    notes = String(allow_none=True, validate=[Length(max=5000), storable])
    active = Boolean()


class PoliceContactCreateIn(_PoliceContactFields):
    name = String(required=True, validate=[Length(min=1, max=120), storable])


class PoliceContactUpdateIn(_PoliceContactFields):
    name = String(validate=[Length(min=1, max=120), storable])


class StepIn(Schema):
    target = String(required=True, validate=OneOf(STEP_TARGETS))
    after_seconds = Integer(required=True, strict=True, validate=Range(min=0, max=_SECONDS_MAX))
    repeat_every_seconds = Integer(
        allow_none=True, load_default=None, strict=True, validate=Range(min=1, max=_SECONDS_MAX)
    )
    stop_on = String(required=True, validate=OneOf(STOP_ON))


class StepOut(Schema):
    target = String(required=True, validate=OneOf(STEP_TARGETS))
    after_seconds = Integer(required=True)
    repeat_every_seconds = Integer(required=True, allow_none=True)
    stop_on = String(required=True, validate=OneOf(STOP_ON))


class PolicyIn(Schema):
    steps = List(Nested(StepIn), required=True, validate=Length(min=1, max=10))


class PolicyOut(Schema):
    kind = String(required=True, validate=OneOf(ALERT_KINDS))
    steps = List(Nested(StepOut), required=True)
    updated_at = DateTime(required=True, allow_none=True)
    updated_by_id = Integer(required=True, allow_none=True)
    is_default = Boolean(
        required=True, metadata={"description": "True when the circle has never changed it."}
    )


PolicyPage = envelope_schema(PolicyOut, "PolicyPage")


class PolicyQuery(PageQuery):
    """Paging of the policy list (in the order of the alert kinds)."""
