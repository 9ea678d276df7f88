"""Input and output schemas of the visits API."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import (
    Boolean,
    Date,
    DateTime,
    Dict,
    Float,
    Integer,
    List,
    Nested,
    String,
)
from apiflask.validators import Length, OneOf, Range, Regexp

from oncall.core.paging import PageQuery, envelope_schema
from oncall.core.patient import CALLER_RELATIONS, DWELLINGS
from oncall.visits.checks import (
    ADDRESS_LIMITS,
    ETA_MINUTES,
    MAX_AGE,
    MAX_BIGINT,
    MAX_INT,
    MAX_NOTE,
    MAX_REASON,
    MAX_UNASSIGN_REASON,
    PATIENT_LIMITS,
)
from oncall.visits.models import STATES

_PHONE = Regexp(r"^\+?[0-9 ()./-]{3,31}$", error="Not a valid phone number.")


def _text(limit: int) -> String:
    return String(validate=Length(max=limit), allow_none=True)


# --------------------------------------------------------------------------- input


class PatientIn(Schema):
    name = _text(PATIENT_LIMITS["name"])
    age = Integer(strict=True, allow_none=True, validate=Range(min=0, max=MAX_AGE))
    birth_date = Date(allow_none=True)
    phone = String(allow_none=True, validate=[Length(max=PATIENT_LIMITS["phone"]), _PHONE])
    usual_gp = _text(PATIENT_LIMITS["usual_gp"])


class AddressIn(Schema):
    street = _text(ADDRESS_LIMITS["street"])
    number = _text(ADDRESS_LIMITS["number"])
    box = _text(ADDRESS_LIMITS["box"])
    postcode = _text(ADDRESS_LIMITS["postcode"])
    city = _text(ADDRESS_LIMITS["city"])
    floor = _text(ADDRESS_LIMITS["floor"])
    access_notes = _text(ADDRESS_LIMITS["access_notes"])
    dwelling = String(allow_none=True, validate=OneOf(DWELLINGS))


class PreparationIn(Schema):
    caller_relation = String(allow_none=True, validate=OneOf(CALLER_RELATIONS))
    caller_at_patient_home = Boolean(allow_none=True)
    new_patient = Boolean(allow_none=True)
    dogs_secured = Boolean(allow_none=True)
    outside_light_on = Boolean(allow_none=True)
    met_at_entrance = Boolean(allow_none=True)
    third_person_present = Boolean(allow_none=True)


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
    patient = Nested(PatientIn, allow_none=True)
    address = Nested(AddressIn, allow_none=True)
    preparation = Nested(PreparationIn, allow_none=True)
    reason = _text(MAX_REASON)
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


class CancelIn(Schema):
    reason = String(required=True, validate=Length(min=1, max=MAX_REASON))


class CheckInIn(Schema):
    location = Nested(LocationIn, allow_none=True)


class CheckOutIn(Schema):
    note = String(allow_none=True, validate=Length(max=MAX_NOTE))
    location = Nested(LocationIn, allow_none=True)


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


class PatientOut(Schema):
    name = String(allow_none=True)
    age = Integer(allow_none=True)
    birth_date = Date(allow_none=True)
    phone = String(allow_none=True)
    usual_gp = String(allow_none=True)


class AddressOut(Schema):
    street = String(allow_none=True)
    number = String(allow_none=True)
    box = String(allow_none=True)
    postcode = String(allow_none=True)
    city = String(allow_none=True)
    floor = String(allow_none=True)
    access_notes = String(allow_none=True)
    dwelling = String(allow_none=True)


class PreparationOut(Schema):
    caller_relation = String(allow_none=True)
    caller_at_patient_home = Boolean(allow_none=True)
    new_patient = Boolean(allow_none=True)
    dogs_secured = Boolean(allow_none=True)
    outside_light_on = Boolean(allow_none=True)
    met_at_entrance = Boolean(allow_none=True)
    third_person_present = Boolean(allow_none=True)


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


class VisitOut(Schema):
    id = Integer(required=True)
    call_id = Integer(required=True)
    zone_id = Integer(required=True)
    doctor_id = Integer(allow_none=True)
    doctor_name = String(allow_none=True)
    status = String(required=True, validate=OneOf(STATES))
    unassigned_reason = String(allow_none=True)
    patient = Nested(PatientOut, required=True)
    address = Nested(AddressOut, required=True)
    preparation = Nested(PreparationOut, required=True)
    reason = String(allow_none=True)
    identity_verified = Boolean(required=True)
    arrive_by = DateTime(allow_none=True)
    created_at = DateTime(required=True)
    updated_at = DateTime(required=True)
    assigned_at = DateTime(allow_none=True)
    checked_in_at = DateTime(allow_none=True)
    checked_out_at = DateTime(allow_none=True)
    cancelled_at = DateTime(allow_none=True)
    cancel_reason = String(allow_none=True)
    outcome_note = String(allow_none=True)
    last_location = Nested(LocationOut, allow_none=True)


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
