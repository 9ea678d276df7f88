"""Input and output schemas of the visits API."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import (
    Boolean,
    DateTime,
    Dict,
    Float,
    Integer,
    List,
    Nested,
    String,
)
from apiflask.validators import Length, OneOf, Range

from oncall.alerts.models import DEADLINE_STATES
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
from oncall.visits.checks import (
    DEFAULT_EXTEND_MINUTES,
    ETA_MINUTES,
    EXPECTED_MINUTES,
    EXTEND_MINUTES,
    MAX_BIGINT,
    MAX_CODE,
    MAX_INT,
    MAX_NOTE,
    MAX_REASON,
    MAX_UNASSIGN_REASON,
)
from oncall.visits.models import STATES

# --------------------------------------------------------------------------- input


class LocationIn(Schema):
    lat = Float(required=True, validate=Range(min=-90, max=90))
    lon = Float(required=True, validate=Range(min=-180, max=180))
    accuracy = Float(allow_none=True, validate=Range(min=0, max=1_000_000))


class VisitCreateIn(Schema):
    call_id = Integer(required=True, strict=True, validate=Range(min=1, max=MAX_BIGINT))
    zone_id = Integer(required=True, strict=True, validate=Range(min=1, max=MAX_INT))
    arrive_by = DateTime(
        allow_none=True,
        metadata={"description": "ISO 8601; without an offset it is the circle's local time"},
    )
    eta_minutes = Integer(
        allow_none=True, strict=True, validate=Range(min=ETA_MINUTES[0], max=ETA_MINUTES[1])
    )
    patient = Nested(PatientInput, allow_none=True)
    address = Nested(AddressInput, allow_none=True)
    preparation = Nested(PreparationInput, allow_none=True)
    reason = storable_text(MAX_REASON, allow_none=True)
    identity_verified = Boolean()


class AssignIn(Schema):
    doctor_id = Integer(
        required=True,
        allow_none=True,
        strict=True,
        validate=Range(min=1, max=MAX_INT),
        metadata={"description": "The doctor to assign; null to unassign (then give a reason)"},
    )
    reason = String(allow_none=True, validate=Length(min=1, max=MAX_UNASSIGN_REASON))
    arrive_by = DateTime(
        allow_none=True,
        metadata={
            "description": "When the doctor should arrive (the arrival deadline); default: "
            "the circle's arrival_minutes from now. ISO 8601; without an offset it is the "
            "circle's local time"
        },
    )


class CancelIn(Schema):
    reason = String(required=True, validate=Length(min=1, max=MAX_REASON))


_CODE_HELP = "The doctor's code, when they have set codes (digits)"


class CheckInIn(Schema):
    location = Nested(LocationIn, allow_none=True)
    code = String(
        allow_none=True, validate=Length(min=1, max=MAX_CODE), metadata={"description": _CODE_HELP}
    )
    expected_minutes = Integer(
        allow_none=True,
        strict=True,
        validate=Range(min=EXPECTED_MINUTES[0], max=EXPECTED_MINUTES[1]),
        metadata={"description": "How long the visit should take; default: the circle's"},
    )


class CheckOutIn(Schema):
    note = String(allow_none=True, validate=Length(max=MAX_NOTE))
    location = Nested(LocationIn, allow_none=True)
    code = String(
        allow_none=True, validate=Length(min=1, max=MAX_CODE), metadata={"description": _CODE_HELP}
    )


class ExtendIn(Schema):
    minutes = Integer(
        load_default=DEFAULT_EXTEND_MINUTES,
        strict=True,
        validate=Range(min=EXTEND_MINUTES[0], max=EXTEND_MINUTES[1]),
        metadata={"description": f"Minutes to add (default {DEFAULT_EXTEND_MINUTES})"},
    )


class VisitListQuery(PageQuery):
    """Filters of the visit list, with the paging parameters ``limit`` and ``offset``."""

    doctor_id = Integer(validate=Range(min=1, max=MAX_INT))
    zone_id = Integer(validate=Range(min=1, max=MAX_INT))
    status = List(
        String(validate=OneOf(STATES)),
        metadata={"description": "One or several states (repeat the parameter)"},
    )
    start = DateTime(metadata={"description": "Created at or after (naive: local time)"})
    end = DateTime(metadata={"description": "Created before (naive: local time)"})


class ItineraryQuery(Schema):
    start = DateTime(metadata={"description": "Default: start of the doctor's current shift"})
    end = DateTime(metadata={"description": "Default: now + 12 hours"})


# --------------------------------------------------------------------------- output


class LocationOut(Schema):
    lat = Float(required=True)
    lon = Float(required=True)
    accuracy = Float(allow_none=True)
    at = DateTime(allow_none=True)


class TimelineEventOut(Schema):
    id = Integer(required=True)
    at = DateTime(required=True)
    kind = String(required=True)
    actor_id = Integer(allow_none=True)
    data = Dict(required=True)


class ArrivalDeadlineOut(Schema):
    due_at = DateTime(required=True)
    state = String(required=True, validate=OneOf(DEADLINE_STATES))


class DepartureDeadlineOut(Schema):
    due_at = DateTime(required=True)
    state = String(required=True, validate=OneOf(DEADLINE_STATES))
    remind_at = DateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When the doctor will be reminded; null once sent or if never"},
    )
    extended_minutes = Integer(required=True)


class DeadlinesOut(Schema):
    arrival = Nested(ArrivalDeadlineOut, required=True, allow_none=True)
    departure = Nested(DepartureDeadlineOut, required=True, allow_none=True)


class VisitOut(Schema):
    id = Integer(required=True)
    call_id = Integer(required=True)
    zone_id = Integer(required=True)
    doctor_id = Integer(allow_none=True)
    doctor_name = String(allow_none=True)
    status = String(required=True, validate=OneOf(STATES))
    unassigned_reason = String(allow_none=True)
    patient = Nested(Patient, required=True)
    address = Nested(Address, required=True)
    preparation = Nested(Preparation, required=True)
    reason = String(allow_none=True)
    identity_verified = Boolean(required=True)
    arrive_by = DateTime(allow_none=True)
    leave_by = DateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When the doctor is expected to leave (after check-in)"},
    )
    created_at = DateTime(required=True)
    updated_at = DateTime(required=True)
    assigned_at = DateTime(allow_none=True)
    checked_in_at = DateTime(allow_none=True)
    checked_out_at = DateTime(allow_none=True)
    cancelled_at = DateTime(allow_none=True)
    cancel_reason = String(allow_none=True)
    outcome_note = String(allow_none=True)
    last_location = Nested(LocationOut, allow_none=True)
    deadlines = Nested(DeadlinesOut, required=True)


#: A page of visits: ``{"items", "limit", "offset", "next_offset"}``, newest first.
VisitPage = envelope_schema(VisitOut, "VisitPage")


class VisitDetailOut(VisitOut):
    timeline = List(Nested(TimelineEventOut), required=True)


class ShiftRefOut(Schema):
    id = Integer(required=True)
    zone_id = Integer(required=True)
    starts_at = DateTime(required=True)
    ends_at = DateTime(required=True)


class ItineraryOut(Schema):
    doctor_id = Integer(required=True)
    doctor_name = String(required=True)
    start = DateTime(required=True)
    end = DateTime(required=True)
    shift = Nested(ShiftRefOut, allow_none=True)
    visits = List(Nested(VisitOut), required=True)
