"""Alerts as the API shows them: plain dictionaries in the shape of the output schemas,
and the police briefing as the printable page shows it.

Deliveries never show a message's content: only the channel, a masked address
and what became of the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from oncall.alerts import messages
from oncall.alerts.models import Alert, EscalationClaim
from oncall.core.timeline import TimelineEvent
from oncall.notify.models import OutboxMessage
from oncall.visits.present import doctor_names

#: Every label of the printable briefing, in one place so that it can be translated.
LABELS: dict[str, str] = {
    "title": "Police briefing",
    "alert": "Alert",
    "kind": "Kind",
    "status": "Status",
    "opened_at": "Opened at",
    "circle": "Circle",
    "zone": "Zone",
    "protocol_reference": "Protocol reference",
    "doctor": "Doctor",
    "name": "Name",
    "phone": "Phone",
    "vehicle": "Vehicle",
    "plate": "Plate",
    "address": "Address",
    "floor": "Floor",
    "access_notes": "Access notes",
    "dwelling": "Dwelling",
    "patient": "Patient",
    "age": "Age",
    "last_check_in": "Last check-in",
    "last_location": "Last known location",
    "coordinates": "Coordinates (lat, lon)",
    "located_at": "At",
    "accuracy": "Accuracy",
    "metres": "m",
    "source": "Source",
    "risk_notes": "Risk notes",
    "none": "None known",
    "unknown": "Unknown",
    "no_visit": "No visit is linked to this alert.",
    "times_in": "Times are local to",
    "generated_at": "Printed at",
    "confidential": "Confidential: contains patient data. Do not leave lying around.",
}

_STATUS = {"open": "Open", "acknowledged": "Acknowledged", "resolved": "Resolved"}
_SOURCE = {"alert": "sent with the alert", "visit": "last position on the visit"}
_DWELLING = {"house": "House", "flat": "Flat", "other": "Other"}


# --------------------------------------------------------------------------- alerts


def _person(user_id: int | None, names: Mapping[int, str]) -> dict[str, Any] | None:
    if user_id is None:
        return None
    return {"id": user_id, "name": names.get(user_id)}


def names_for(alerts: Sequence[Alert], circle_id: int) -> dict[int, str]:
    """The names of every person the alerts mention, by id (one query)."""
    ids: list[int | None] = []
    for alert in alerts:
        ids += [alert.doctor_id, alert.acknowledged_by_id, alert.escalated_by_id,
                alert.resolved_by_id]
    return doctor_names(ids, circle_id)


def present_alert(alert: Alert, names: Mapping[int, str]) -> dict[str, Any]:
    """An alert as ``AlertOut``; people's names from ``names``."""
    location = None
    if alert.lat is not None and alert.lon is not None:
        location = {
            "lat": alert.lat,
            "lon": alert.lon,
            "accuracy": alert.accuracy_m,
            "at": alert.located_at,
        }
    return {
        "id": alert.id,
        "kind": alert.kind,
        "status": alert.status,
        "level": alert.level,
        "opened_at": alert.opened_at,
        "due_at": alert.due_at,
        "updated_at": alert.updated_at,
        "next_step_at": alert.next_step_at,
        "doctor": _person(alert.doctor_id, names),
        "visit_id": alert.visit_id,
        "zone_id": alert.zone_id,
        "deadline_id": alert.deadline_id,
        "acknowledged_by": _person(alert.acknowledged_by_id, names),
        "acknowledged_at": alert.acknowledged_at,
        "escalated_by": _person(alert.escalated_by_id, names),
        "escalated_at": alert.escalated_at,
        "resolved_by": _person(alert.resolved_by_id, names),
        "resolved_at": alert.resolved_at,
        "resolution_note": alert.resolution_note,
        "location": location,
    }


def present_one(alert: Alert) -> dict[str, Any]:
    """One alert with the names of the people it mentions."""
    return present_alert(alert, names_for([alert], alert.circle_id))


def present_many(alerts: Sequence[Alert], circle_id: int) -> list[dict[str, Any]]:
    """Alerts in the given order, every name read in one query."""
    names = names_for(alerts, circle_id)
    return [present_alert(alert, names) for alert in alerts]


def mask_address(channel: str, address: str) -> str:
    """Enough of an address to tell which one it was, not enough to use it.

    An email keeps its first letter and its domain, a phone number its first
    four and last two characters, a webhook its scheme and host (a path or query
    may hold a secret).
    """
    if channel == "email" and "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if channel == "sms":
        if len(address) <= 6:
            return "***"
        return f"{address[:4]}***{address[-2:]}"
    if channel == "webhook":
        try:
            parts = urlsplit(address)
            scheme, host = parts.scheme, parts.hostname or ""
        except ValueError:
            return "***"
        if scheme and host:
            return f"{scheme}://{host}/***"
    return "***"


def present_claim(claim: EscalationClaim) -> dict[str, Any]:
    """A fired step as ``ClaimOut``."""
    return {
        "id": claim.id,
        "level": claim.level,
        "step": claim.step_index,
        "repeat": claim.repeat_no,
        "target": claim.target,
        "due_at": claim.due_at,
        "fired_at": claim.fired_at,
        "messages": claim.messages,
    }


def present_delivery(row: OutboxMessage) -> dict[str, Any]:
    """An outbox row as ``DeliveryOut``: what became of it, never what it said."""
    return {
        "id": row.id,
        "claim_id": row.claim_id,
        "purpose": row.purpose,
        "channel": row.channel,
        "address": mask_address(row.channel, row.address),
        "recipient_type": row.recipient_type,
        "recipient_id": row.recipient_id,
        "state": row.state,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "next_attempt_at": row.next_attempt_at,
        "delivered_at": row.delivered_at,
        "cancelled_at": row.cancelled_at,
        "last_error": row.last_error,
        "receipt": row.receipt,
    }


def present_detail(
    alert: Alert,
    timeline: Sequence[TimelineEvent],
    claims: Sequence[EscalationClaim],
    deliveries: Sequence[OutboxMessage],
) -> dict[str, Any]:
    """One alert as ``AlertDetailOut``: its frozen policy, progress, timeline, steps, messages."""
    out = present_one(alert)
    out["policy"] = [dict(step) for step in alert.policy]
    out["progress"] = list(alert.progress)
    out["timeline"] = [event.to_dict() for event in timeline]
    out["claims"] = [present_claim(claim) for claim in claims]
    out["deliveries"] = [present_delivery(row) for row in deliveries]
    return out


# --------------------------------------------------------------------------- the page


def _local(value: str | None, zone: ZoneInfo) -> str | None:
    if not value:
        return None
    return datetime.fromisoformat(value).astimezone(zone).strftime("%d/%m/%Y %H:%M")


def _join(*parts: Any, sep: str = " ") -> str | None:
    text = sep.join(str(p) for p in parts if p not in (None, ""))
    return text or None


def briefing_page(briefing: Mapping[str, Any], timezone: str, now: datetime) -> dict[str, Any]:
    """The briefing as the printable page shows it: local times, joined lines, labels."""
    zone = ZoneInfo(timezone)
    alert = briefing["alert"]
    circle = briefing.get("circle") or {}
    page: dict[str, Any] = {
        "labels": LABELS,
        "timezone": timezone,
        "generated_at": now.astimezone(zone).strftime("%d/%m/%Y %H:%M"),
        "alert": {
            "id": alert["id"],
            "kind": messages.kind_label(alert["kind"], "en"),
            "status": _STATUS.get(alert["status"], alert["status"]),
            "opened_at": _local(alert.get("opened_at"), zone),
        },
        "circle": circle.get("name"),
        "zone": circle.get("zone"),
        "protocol_reference": circle.get("protocol_reference"),
        "doctor": None,
        "address": None,
        "patient": None,
        "last_check_in": None,
        "last_location": None,
        "risk_notes": list(briefing.get("risk_notes") or []),
    }
    doctor = briefing.get("doctor")
    if doctor:
        vehicle = doctor.get("vehicle") or {}
        page["doctor"] = {
            "name": doctor.get("name"),
            "phone": doctor.get("phone"),
            "vehicle": _join(vehicle.get("make"), vehicle.get("colour")),
            "plate": vehicle.get("plate"),
        }
    visit = briefing.get("visit")
    if visit:
        address = visit.get("address") or {}
        street = _join(address.get("street"), address.get("number"))
        box = f"box {address['box']}" if address.get("box") else None
        page["address"] = {
            "street": _join(street, box, sep=", "),
            "town": _join(address.get("postcode"), address.get("city")),
            "floor": address.get("floor"),
            "access_notes": address.get("access_notes"),
            "dwelling": _DWELLING.get(str(address.get("dwelling")), address.get("dwelling")),
        }
    patient = briefing.get("patient")
    if patient:
        page["patient"] = dict(patient)
    check_in = briefing.get("last_check_in")
    if check_in:
        page["last_check_in"] = _local(check_in.get("at"), zone)
    location = briefing.get("last_location")
    if location:
        page["last_location"] = {
            "lat": f"{location['lat']:.5f}",
            "lon": f"{location['lon']:.5f}",
            "accuracy": None if location.get("accuracy_m") is None
            else f"{location['accuracy_m']:.0f}",
            "at": _local(location.get("at"), zone),
            "source": _SOURCE.get(location.get("source") or "", location.get("source")),
        }
    return page
