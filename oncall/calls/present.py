"""The API form of calls and of the visits shown in a caller's history."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select

from oncall.calls.models import Call
from oncall.extensions import db
from oncall.visits.models import Visit


def visit_ids(circle_id: int, call_ids: list[int]) -> dict[int, list[int]]:
    """The ids of the visits created from each call, oldest first (an empty list if none)."""
    out: dict[int, list[int]] = defaultdict(list)
    if not call_ids:
        return out
    rows = db.session.execute(
        select(Visit.call_id, Visit.id)
        .where(Visit.circle_id == circle_id, Visit.call_id.in_(call_ids))
        .order_by(Visit.id)
    )
    for call_id, visit_id in rows:
        out[call_id].append(visit_id)
    return out


def serialise_call(call: Call, visit_ids: list[int]) -> dict[str, Any]:
    """The API form of a call (nested patient, address and preparation)."""
    return {
        "id": call.id,
        "call_ref": call.call_ref,
        "state": call.state,
        "caller_number": call.caller_number,
        "caller_name": call.caller_name,
        "line": call.line,
        "recording_ref": call.recording_ref,
        "ringing_at": call.ringing_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "dispatcher_id": call.dispatcher_id,
        "patient": call.patient_dict(),
        "address": call.address_dict(),
        "preparation": call.preparation_dict(),
        "reason": call.reason,
        "identity_verified": bool(call.identity_verified),
        "identity_verified_at": call.identity_verified_at,
        "outcome": call.outcome,
        "note": call.note,
        "created_at": call.created_at,
        "updated_at": call.updated_at,
        "visit_ids": list(visit_ids),
    }


def serialise_visit(visit: Visit) -> dict[str, Any]:
    """The short API form of a visit in a caller's history."""
    return {
        "id": visit.id,
        "call_id": visit.call_id,
        "status": visit.status,
        "zone_id": visit.zone_id,
        "doctor_id": visit.doctor_id,
        "reason": visit.reason,
        "created_at": visit.created_at,
        "checked_in_at": visit.checked_in_at,
        "checked_out_at": visit.checked_out_at,
        "cancelled_at": visit.cancelled_at,
        "patient": visit.patient_dict(),
        "address": visit.address_dict(),
    }
