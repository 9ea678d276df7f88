"""Input and output schemas of the calls domain."""

from __future__ import annotations

from typing import Any

from apiflask import Schema
from apiflask.fields import Boolean, Date, DateTime, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range

from oncall.calls.models import CALL_STATES, OUTCOMES, TELEPHONY_EVENTS
from oncall.core.paging import PageQuery, envelope_schema
from oncall.core.patient import CALLER_RELATIONS, DWELLINGS
from oncall.core.text import storable

LONG_TEXT = 4000


def text(max_length: int, *, min_length: int = 0, **kwargs: Any) -> String:
    """A string field bounded in length and storable as it is."""
    return String(validate=[Length(min=min_length, max=max_length), storable], **kwargs)


# --- input -------------------------------------------------------------------


class CallPatientIn(Schema):
    name = text(160, allow_none=True)
    age = Integer(validate=Range(min=0, max=130), allow_none=True, strict=True)
    birth_date = Date(allow_none=True)
    phone = text(32, allow_none=True)
    usual_gp = text(160, allow_none=True)


class CallAddressIn(Schema):
    street = text(160, allow_none=True)
    number = text(16, allow_none=True)
    box = text(16, allow_none=True)
    postcode = text(12, allow_none=True)
    city = text(80, allow_none=True)
    floor = text(16, allow_none=True)
    access_notes = text(2000, allow_none=True)
    dwelling = String(validate=OneOf(DWELLINGS), allow_none=True)


class CallPreparationIn(Schema):
    caller_relation = String(validate=OneOf(CALLER_RELATIONS), allow_none=True)
    caller_at_patient_home = Boolean(allow_none=True)
    new_patient = Boolean(allow_none=True)
    dogs_secured = Boolean(allow_none=True)
    outside_light_on = Boolean(allow_none=True)
    met_at_entrance = Boolean(allow_none=True)
    third_person_present = Boolean(allow_none=True)


class CallCreateIn(Schema):
    """A call logged by hand by a dispatcher."""

    caller_number = text(
        32, allow_none=True, metadata={"description": "Any usual form; stored as E.164"}
    )
    caller_name = text(160, allow_none=True)
    line = text(40, allow_none=True)
    answered_at = DateTime(
        allow_none=True,
        metadata={"description": "Default now; without an offset: the circle's local time"},
    )
    ended_at = DateTime(allow_none=True)
    patient = Nested(CallPatientIn)
    address = Nested(CallAddressIn)
    preparation = Nested(CallPreparationIn)
    reason = text(LONG_TEXT, allow_none=True)
    identity_verified = Boolean(metadata={"description": "Identity confirmed by calling back"})
    outcome = String(validate=OneOf(OUTCOMES), allow_none=True)
    note = text(LONG_TEXT, allow_none=True)


class CallUpdateIn(Schema):
    """Fields a dispatcher may change on a call; only those sent are changed."""

    caller_name = text(160, allow_none=True)
    patient = Nested(CallPatientIn)
    address = Nested(CallAddressIn)
    preparation = Nested(CallPreparationIn)
    reason = text(LONG_TEXT, allow_none=True)
    identity_verified = Boolean()
    outcome = String(validate=OneOf(OUTCOMES), allow_none=True)
    note = text(LONG_TEXT, allow_none=True)


class CallQuery(PageQuery):
    start = DateTime(
        metadata={"description": "Calls created at or after (local time without offset)"}
    )
    end = DateTime(metadata={"description": "Calls created before (local time without offset)"})
    number = text(32, metadata={"description": "Caller number in any usual form"})
    outcome = String(validate=OneOf(OUTCOMES))


class TelephonyEventIn(Schema):
    """One event of the telephone system."""

    call_ref = text(120, min_length=1, required=True)
    event = String(required=True, validate=OneOf(TELEPHONY_EVENTS))
    caller_number = text(
        32, allow_none=True, metadata={"description": "Empty or 'anonymous' when withheld"}
    )
    line = text(40, allow_none=True)
    recording_ref = text(200, allow_none=True)
    occurred_at = DateTime(
        allow_none=True, metadata={"description": "Default: when received; no offset: local time"}
    )
    agent = text(
        254,
        allow_none=True,
        metadata={"description": "Answering dispatcher's email or user id (answered events)"},
    )


class TelephonyHeaders(Schema):
    """The signature headers of the telephone system (see the operation's description)."""

    circle = String(
        data_key="X-Oncall-Circle", required=True, metadata={"description": "The circle's id"}
    )
    timestamp = String(
        data_key="X-Oncall-Timestamp",
        required=True,
        metadata={"description": "Unix time in seconds when the request was signed"},
    )
    signature = String(
        data_key="X-Oncall-Signature",
        required=True,
        metadata={
            "description": "sha256=<hex HMAC-SHA256(circle secret, '<timestamp>.<raw body>')>"
        },
    )


# --- output ------------------------------------------------------------------


class CallPatientOut(Schema):
    name = String(allow_none=True)
    age = Integer(allow_none=True)
    birth_date = Date(allow_none=True)
    phone = String(allow_none=True)
    usual_gp = String(allow_none=True)


class CallAddressOut(Schema):
    street = String(allow_none=True)
    number = String(allow_none=True)
    box = String(allow_none=True)
    postcode = String(allow_none=True)
    city = String(allow_none=True)
    floor = String(allow_none=True)
    access_notes = String(allow_none=True)
    dwelling = String(allow_none=True)


class CallPreparationOut(Schema):
    caller_relation = String(allow_none=True)
    caller_at_patient_home = Boolean(allow_none=True)
    new_patient = Boolean(allow_none=True)
    dogs_secured = Boolean(allow_none=True)
    outside_light_on = Boolean(allow_none=True)
    met_at_entrance = Boolean(allow_none=True)
    third_person_present = Boolean(allow_none=True)


class CallOut(Schema):
    id = Integer(required=True)
    call_ref = String(allow_none=True)
    state = String(required=True, validate=OneOf(CALL_STATES))
    caller_number = String(allow_none=True, metadata={"description": "E.164"})
    caller_name = String(allow_none=True)
    line = String(allow_none=True)
    recording_ref = String(allow_none=True)
    ringing_at = DateTime(allow_none=True)
    answered_at = DateTime(allow_none=True)
    ended_at = DateTime(allow_none=True)
    dispatcher_id = Integer(allow_none=True)
    patient = Nested(CallPatientOut, required=True)
    address = Nested(CallAddressOut, required=True)
    preparation = Nested(CallPreparationOut, required=True)
    reason = String(allow_none=True)
    identity_verified = Boolean(required=True)
    identity_verified_at = DateTime(allow_none=True)
    outcome = String(allow_none=True, validate=OneOf(OUTCOMES))
    note = String(allow_none=True)
    created_at = DateTime(required=True)
    updated_at = DateTime(required=True)
    visit_ids = List(Integer(), required=True)


class CallItemOut(CallOut):
    """A call inside a list (the same fields as :class:`CallOut`)."""


CallPage = envelope_schema(CallOut, "CallPage")


class TelephonyAck(Schema):
    call_id = Integer(required=True)
    state = String(required=True, validate=OneOf(CALL_STATES))


class CallerOut(Schema):
    id = Integer(required=True)
    number = String(required=True, metadata={"description": "E.164"})
    name = String(allow_none=True)
    first_seen_at = DateTime(required=True)
    last_seen_at = DateTime(required=True)


class CallerVisitOut(Schema):
    id = Integer(required=True)
    call_id = Integer(required=True)
    status = String(required=True)
    zone_id = Integer(required=True)
    doctor_id = Integer(allow_none=True)
    reason = String(allow_none=True)
    created_at = DateTime(required=True)
    checked_in_at = DateTime(allow_none=True)
    checked_out_at = DateTime(allow_none=True)
    cancelled_at = DateTime(allow_none=True)
    patient = Nested(CallPatientOut, required=True)
    address = Nested(CallAddressOut, required=True)


class CallerHistoryOut(Schema):
    caller = Nested(CallerOut, required=True)
    calls = List(Nested(CallItemOut), required=True, metadata={"description": "Newest first"})
    visits = List(Nested(CallerVisitOut), required=True, metadata={"description": "Newest first"})
    risk_flags = List(Dict(), required=True)
