"""Input and output schemas of the alerts API (panic button, alerts, police briefing)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import DateTime, Dict, Float, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range

from oncall.alerts.models import ALERT_STATES
from oncall.circles.models import ALERT_KINDS, STEP_TARGETS
from oncall.core.paging import PageQuery, envelope_schema
from oncall.core.patient_schemas import Address

#: Longest resolution note.
MAX_NOTE = 2000
#: Longest code accepted on a panic cancel (codes are short; this only bounds the work).
MAX_CODE = 64
MAX_INT = 2**31 - 1
MAX_BIGINT = 2**63 - 1
BRIEFING_FORMATS = ("json", "html")

# --------------------------------------------------------------------------- input


class PanicLocationIn(Schema):
    lat = Float(required=True, validate=Range(min=-90, max=90))
    lon = Float(required=True, validate=Range(min=-180, max=180))
    accuracy = Float(allow_none=True, validate=Range(min=0, max=1_000_000))


class PanicIn(Schema):
    visit_id = Integer(
        allow_none=True,
        strict=True,
        validate=Range(min=1, max=MAX_BIGINT),
        metadata={"description": "Default: the doctor's visit on site, else their next one"},
    )
    location = Nested(PanicLocationIn, allow_none=True)


class PanicCancelIn(Schema):
    code = String(
        required=True,
        validate=Length(min=1, max=MAX_CODE),
        metadata={"description": "The doctor's check-in code"},
    )


class ResolveIn(Schema):
    note = String(
        required=True,
        validate=Length(min=1, max=MAX_NOTE),
        metadata={"description": "Doctor reached and safe, false alarm, police on site..."},
    )


class AlertListQuery(PageQuery):
    """Filters of the alert list, with the paging parameters ``limit`` and ``offset``."""

    status = List(
        String(validate=OneOf(ALERT_STATES)),
        metadata={"description": "One or several states (repeat the parameter)"},
    )
    kind = List(
        String(validate=OneOf(ALERT_KINDS)),
        metadata={"description": "One or several kinds (repeat the parameter)"},
    )
    visit_id = Integer(validate=Range(min=1, max=MAX_BIGINT))
    doctor_id = Integer(validate=Range(min=1, max=MAX_INT))


class BriefingQuery(Schema):
    format = String(
        validate=OneOf(BRIEFING_FORMATS),
        metadata={"description": "json (default) or html (a printable page); "
                  "an Accept header preferring text/html also gives the page"},
    )


# --------------------------------------------------------------------------- output


class PanicOut(Schema):
    alert_id = Integer(required=True)
    status = String(required=True)
    opened_at = DateTime(required=True)


class PanicCancelOut(Schema):
    alert_id = Integer(required=True)
    status = String(required=True, metadata={"description": "Always 'cancelled'"})


class PersonRefOut(Schema):
    id = Integer(required=True)
    name = String(required=True, allow_none=True)


class AlertLocationOut(Schema):
    lat = Float(required=True)
    lon = Float(required=True)
    accuracy = Float(allow_none=True)
    at = DateTime(allow_none=True)


class AlertOut(Schema):
    id = Integer(required=True)
    kind = String(required=True, validate=OneOf(ALERT_KINDS))
    status = String(required=True, validate=OneOf(ALERT_STATES))
    level = Integer(required=True)
    opened_at = DateTime(required=True)
    due_at = DateTime(required=True)
    updated_at = DateTime(required=True)
    next_step_at = DateTime(required=True, allow_none=True)
    doctor = Nested(PersonRefOut, required=True, allow_none=True)
    visit_id = Integer(required=True, allow_none=True)
    zone_id = Integer(required=True, allow_none=True)
    deadline_id = Integer(required=True, allow_none=True)
    acknowledged_by = Nested(PersonRefOut, required=True, allow_none=True)
    acknowledged_at = DateTime(required=True, allow_none=True)
    escalated_by = Nested(PersonRefOut, required=True, allow_none=True)
    escalated_at = DateTime(required=True, allow_none=True)
    resolved_by = Nested(PersonRefOut, required=True, allow_none=True)
    resolved_at = DateTime(required=True, allow_none=True)
    resolution_note = String(required=True, allow_none=True)
    location = Nested(AlertLocationOut, required=True, allow_none=True)


#: A page of alerts: open and acknowledged first, then resolved; newest first within.
AlertPage = envelope_schema(AlertOut, "AlertPage")


class AlertEventOut(Schema):
    id = Integer(required=True)
    at = DateTime(required=True)
    kind = String(required=True)
    actor_id = Integer(allow_none=True)
    data = Dict(required=True)


class PolicyStepOut(Schema):
    target = String(required=True, validate=OneOf(STEP_TARGETS))
    after_seconds = Integer(required=True)
    repeat_every_seconds = Integer(required=True, allow_none=True)
    stop_on = String(required=True, allow_none=True)


class ClaimOut(Schema):
    id = Integer(required=True)
    level = Integer(required=True)
    step = Integer(required=True, metadata={"description": "Index of the step in policy"})
    repeat = Integer(required=True, metadata={"description": "0 for the first firing"})
    target = String(required=True)
    due_at = DateTime(required=True)
    fired_at = DateTime(required=True)
    messages = Integer(required=True)


class DeliveryOut(Schema):
    id = Integer(required=True)
    claim_id = Integer(required=True, allow_none=True)
    purpose = String(required=True)
    channel = String(required=True)
    address = String(required=True, metadata={"description": "Masked"})
    recipient_type = String(required=True)
    recipient_id = Integer(required=True)
    state = String(required=True)
    attempts = Integer(required=True)
    created_at = DateTime(required=True)
    next_attempt_at = DateTime(required=True, allow_none=True)
    delivered_at = DateTime(required=True, allow_none=True)
    cancelled_at = DateTime(required=True, allow_none=True)
    last_error = String(required=True, allow_none=True)
    receipt = String(required=True, allow_none=True)


class AlertDetailOut(AlertOut):
    policy = List(Nested(PolicyStepOut), required=True)
    progress = List(Integer(), required=True)
    timeline = List(Nested(AlertEventOut), required=True)
    claims = List(Nested(ClaimOut), required=True)
    deliveries = List(Nested(DeliveryOut), required=True)


# --------------------------------------------------------------------------- briefing


class BriefingAlertOut(Schema):
    id = Integer(required=True)
    kind = String(required=True)
    status = String(required=True)
    opened_at = String(required=True, allow_none=True)
    due_at = String(required=True, allow_none=True)


class BriefingCircleOut(Schema):
    name = String(required=True, allow_none=True)
    protocol_reference = String(required=True, allow_none=True)
    zone = String(required=True, allow_none=True)


class VehicleOut(Schema):
    make = String(required=True, allow_none=True)
    colour = String(required=True, allow_none=True)
    plate = String(required=True, allow_none=True)


class BriefingDoctorOut(Schema):
    name = String(required=True, allow_none=True)
    phone = String(required=True, allow_none=True)
    vehicle = Nested(VehicleOut, required=True)


class BriefingVisitOut(Schema):
    id = Integer(required=True)
    status = String(required=True)
    address = Nested(Address, required=True)
    arrive_by = String(required=True, allow_none=True)
    checked_in_at = String(required=True, allow_none=True)
    reason = String(required=True, allow_none=True)


class BriefingPatientOut(Schema):
    name = String(required=True, allow_none=True)
    phone = String(required=True, allow_none=True)
    age = Integer(required=True, allow_none=True)


class BriefingCheckInOut(Schema):
    at = String(required=True, allow_none=True)
    visit_id = Integer(required=True)


class BriefingLocationOut(Schema):
    lat = Float(required=True)
    lon = Float(required=True)
    accuracy_m = Float(required=True, allow_none=True)
    at = String(required=True, allow_none=True)
    source = String(required=True)


class BriefingOut(Schema):
    alert = Nested(BriefingAlertOut, required=True)
    circle = Nested(BriefingCircleOut, required=True)
    doctor = Nested(BriefingDoctorOut, required=True, allow_none=True)
    visit = Nested(BriefingVisitOut, required=True, allow_none=True)
    patient = Nested(BriefingPatientOut, required=True, allow_none=True)
    last_check_in = Nested(BriefingCheckInOut, required=True, allow_none=True)
    last_location = Nested(BriefingLocationOut, required=True, allow_none=True)
    risk_notes = List(String(), required=True)
