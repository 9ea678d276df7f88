"""The police briefing: everything a police contact needs to act, in one document.

The same dictionary goes into the police notification (webhook payload, email
and SMS text) and is served at ``/alerts/{id}/briefing``. It follows the safety
guides: who the doctor is and what they drive, where exactly they went (floor,
access, dwelling), who the patient is, when the doctor was last heard of and
where, what was known of the risks, and the circle's protocol reference.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from oncall.accounts.models import User
from oncall.alerts.models import Alert
from oncall.circles.models import Circle, PoliceContact, Zone
from oncall.extensions import db
from oncall.visits.models import Visit

#: Checklist answers (from the call and the visit) that a police officer should know.
_RISK_NOTES: tuple[tuple[str, bool, str], ...] = (
    ("dogs_secured", False, "Dogs may not be secured."),
    ("outside_light_on", False, "The outside light may be off."),
    ("met_at_entrance", False, "Nobody was to meet the doctor at the entrance."),
    ("third_person_present", True, "A third person is present in the home."),
    ("caller_at_patient_home", False, "The caller is not at the patient's home."),
    ("new_patient", True, "The patient is not known to the circle."),
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def risk_notes(visit: Visit | None) -> list[str]:
    """Plain sentences from the visit's checklist and identity check."""
    if visit is None:
        return []
    notes = [
        sentence
        for field, flagged_when, sentence in _RISK_NOTES
        if getattr(visit, field, None) is flagged_when
    ]
    if not visit.identity_verified:
        notes.append("The caller's identity was not verified by a call-back.")
    return notes


def _last_location(alert: Alert, visit: Visit | None) -> dict[str, Any] | None:
    candidates: list[tuple[datetime, dict[str, Any]]] = []
    if alert.lat is not None and alert.lon is not None and alert.located_at is not None:
        candidates.append((alert.located_at, {
            "lat": alert.lat, "lon": alert.lon, "accuracy_m": alert.accuracy_m,
            "at": _iso(alert.located_at), "source": "alert",
        }))
    if visit is not None and visit.last_lat is not None and visit.last_location_at is not None:
        candidates.append((visit.last_location_at, {
            "lat": visit.last_lat, "lon": visit.last_lon, "accuracy_m": visit.last_accuracy_m,
            "at": _iso(visit.last_location_at), "source": "visit",
        }))
    if not candidates:
        return None
    return max(candidates, key=lambda pair: pair[0])[1]


def build(
    alert: Alert,
    contact: PoliceContact | None = None,
    get: Callable[[type, int], Any] | None = None,
) -> dict[str, Any]:
    """The briefing of ``alert`` (for ``contact`` when given: their protocol reference).

    ``get`` loads a row by id (default ``db.session.get``; the engine passes its
    per-pass cache)."""
    get = get or db.session.get
    circle = get(Circle, alert.circle_id)
    doctor = get(User, alert.doctor_id) if alert.doctor_id else None
    visit = get(Visit, alert.visit_id) if alert.visit_id else None
    zone = get(Zone, alert.zone_id) if alert.zone_id else None
    reference = (contact.protocol_reference if contact else None) or (
        circle.police_protocol_reference if circle else None
    )
    out: dict[str, Any] = {
        "alert": {
            "id": alert.id,
            "kind": alert.kind,
            "status": alert.status,
            "opened_at": _iso(alert.opened_at),
            "due_at": _iso(alert.due_at),
        },
        "circle": {
            "name": circle.name if circle else None,
            "protocol_reference": reference,
            "zone": zone.name if zone else None,
        },
        "doctor": None,
        "visit": None,
        "patient": None,
        "last_check_in": None,
        "last_location": _last_location(alert, visit),
        "risk_notes": risk_notes(visit),
    }
    if doctor is not None:
        out["doctor"] = {
            "name": doctor.name,
            "phone": doctor.phone,
            "vehicle": {
                "make": doctor.vehicle_make,
                "colour": doctor.vehicle_colour,
                "plate": doctor.vehicle_plate,
            },
        }
    if visit is not None:
        out["visit"] = {
            "id": visit.id,
            "status": visit.status,
            "address": visit.address_dict(),
            "arrive_by": _iso(visit.arrive_by),
            "checked_in_at": _iso(visit.checked_in_at),
            "reason": None,  # medical reasons are not the police's business
        }
        out["patient"] = {
            "name": visit.patient_name,
            "phone": visit.patient_phone,
            "age": visit.patient_age,
        }
        if visit.checked_in_at is not None:
            out["last_check_in"] = {"at": _iso(visit.checked_in_at), "visit_id": visit.id}
    return out


def summary_lines(briefing: dict[str, Any]) -> list[str]:
    """The briefing as short lines (email and SMS text; English field names)."""
    lines: list[str] = []
    doctor = briefing.get("doctor") or {}
    if doctor:
        vehicle = doctor.get("vehicle") or {}
        car = " ".join(str(v) for v in (vehicle.get("make"), vehicle.get("colour")) if v)
        plate = vehicle.get("plate")
        lines.append(
            f"Doctor: {doctor.get('name')} {doctor.get('phone') or ''}".rstrip()
            + (f"; vehicle {car} {plate or ''}".rstrip() if car or plate else "")
        )
    visit = briefing.get("visit") or {}
    address = visit.get("address") or {}
    if address:
        street = " ".join(
            str(address[k]) for k in ("street", "number") if address.get(k)
        )
        box = f" box {address['box']}" if address.get("box") else ""
        town = " ".join(str(address[k]) for k in ("postcode", "city") if address.get(k))
        lines.append(f"Address: {street}{box}, {town}".strip(", "))
        if address.get("floor"):
            lines.append(f"Floor: {address['floor']}")
        if address.get("access_notes"):
            lines.append(f"Access: {address['access_notes']}")
        if address.get("dwelling"):
            lines.append(f"Dwelling: {address['dwelling']}")
    patient = briefing.get("patient") or {}
    if patient.get("name") or patient.get("phone"):
        lines.append(f"Patient: {patient.get('name') or '?'} {patient.get('phone') or ''}".rstrip())
    if briefing.get("last_check_in"):
        lines.append(f"Last check-in: {briefing['last_check_in']['at']}")
    location = briefing.get("last_location")
    if location:
        lat, lon = location["lat"], location["lon"]
        lines.append(f"Last location: {lat:.5f},{lon:.5f} at {location['at']}")
    lines.extend(f"Risk: {note}" for note in briefing.get("risk_notes") or [])
    reference = (briefing.get("circle") or {}).get("protocol_reference")
    if reference:
        lines.append(f"Protocol: {reference}")
    return lines
