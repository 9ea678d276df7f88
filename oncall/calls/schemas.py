"""Input and output schemas of the calls domain."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Dict, Integer, List, Nested, String
from apiflask.validators import OneOf

from oncall.calls.models import CALL_STATES, OUTCOMES, TELEPHONY_EVENTS
from oncall.core.paging import PageQuery, envelope_schema
from oncall.core.patient_schemas import (
    Address,
    AddressInput,
    Patient,
    PatientInput,
    Preparation,
    PreparationInput,
    storable_text,
)

LONG_TEXT = 4000


# --- input -------------------------------------------------------------------


class CallCreateIn(Schema):
    """A call logged by hand by a dispatcher."""

    caller_number = storable_text(
        32, allow_none=True, metadata={"description": "Any usual form; stored as E.164"}
    )
    caller_name = storable_text(160, allow_none=True)
    line = storable_text(40, allow_none=True)
    answered_at = DateTime(
        allow_none=True,
        metadata={"description": "Default now; without an offset: the circle's local time"},
    )
    ended_at = DateTime(allow_none=True)
    patient = Nested(PatientInput)
    address = Nested(AddressInput)
    preparation = Nested(PreparationInput)
    reason = storable_text(LONG_TEXT, allow_none=True)
    identity_verified = Boolean(metadata={"description": "Identity confirmed by calling back"})
    outcome = String(validate=OneOf(OUTCOMES), allow_none=True)
    note = storable_text(LONG_TEXT, allow_none=True)


class CallUpdateIn(Schema):
    """Fields a dispatcher may change on a call; only those sent are changed."""

    caller_name = storable_text(160, allow_none=True)
    patient = Nested(PatientInput)
    address = Nested(AddressInput)
    preparation = Nested(PreparationInput)
    reason = storable_text(LONG_TEXT, allow_none=True)
    identity_verified = Boolean()
    outcome = String(validate=OneOf(OUTCOMES), allow_none=True)
    note = storable_text(LONG_TEXT, allow_none=True)


class CallQuery(PageQuery):
    start = DateTime(
        metadata={"description": "Calls created at or after (local time without offset)"}
    )
    end = DateTime(metadata={"description": "Calls created before (local time without offset)"})
    number = storable_text(32, metadata={"description": "Caller number in any usual form"})
    outcome = String(validate=OneOf(OUTCOMES))


class TelephonyEventIn(Schema):
    """One event of the telephone system."""

    call_ref = storable_text(120, min_length=1, required=True)
    event = String(required=True, validate=OneOf(TELEPHONY_EVENTS))
    caller_number = storable_text(
        32, allow_none=True, metadata={"description": "Empty or 'anonymous' when withheld"}
    )
    line = storable_text(40, allow_none=True)
    recording_ref = storable_text(200, allow_none=True)
    occurred_at = DateTime(
        allow_none=True, metadata={"description": "Default: when received; no offset: local time"}
    )
    agent = storable_text(
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
    patient = Nested(Patient, required=True)
    address = Nested(Address, required=True)
    preparation = Nested(Preparation, required=True)
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
    patient = Nested(Patient, required=True)
    address = Nested(Address, required=True)


class CallerHistoryOut(Schema):
    caller = Nested(CallerOut, required=True)
    calls = List(Nested(CallItemOut), required=True, metadata={"description": "Newest first"})
    visits = List(Nested(CallerVisitOut), required=True, metadata={"description": "Newest first"})
    risk_flags = List(Dict(), required=True)
