"""Tables of a circle's setup."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from oncall.core.types import JSONType, UTCDateTime
from oncall.extensions import db

ALERT_KINDS = ("missed_arrival", "missed_checkout", "panic", "duress")
STEP_TARGETS = ("doctor", "coordinator", "police")
STOP_ON = ("acknowledge", "resolve")


class Circle(db.Model):  # type: ignore[name-defined]
    """A GP circle: the tenant every other row belongs to."""

    __tablename__ = "circles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Brussels")
    country: Mapped[str] = mapped_column(String(2), default="BE")
    #: Bumped to rotate the telephone system's signing secret (derived, never stored).
    telephony_key_version: Mapped[int] = mapped_column(Integer, default=1)
    #: Arrival deadline when the dispatcher gives no estimate, in minutes after assignment.
    arrival_minutes: Mapped[int] = mapped_column(Integer, default=45)
    #: Expected length of a visit: the departure deadline after check-in, in minutes.
    visit_minutes: Mapped[int] = mapped_column(Integer, default=45)
    #: How long before the departure deadline the doctor is reminded, in minutes (0: never).
    reminder_minutes: Mapped[int] = mapped_column(Integer, default=5)
    #: The circle's reference in its protocol with the police, quoted in every briefing.
    police_protocol_reference: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Zone(db.Model):  # type: ignore[name-defined]
    """A sector of the circle; visits and shifts belong to one."""

    __tablename__ = "zones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    code: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (UniqueConstraint("circle_id", "name"),)


class PoliceContact(db.Model):  # type: ignore[name-defined]
    """The police zone's contact under the circle's protocol (per zone or circle-wide)."""

    __tablename__ = "police_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    #: None: applies to every zone that has no contact of its own.
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    protocol_reference: Mapped[str | None] = mapped_column(String(120))
    notes: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class EscalationPolicy(db.Model):  # type: ignore[name-defined]
    """Ordered escalation steps for one alert kind of one circle.

    ``steps`` is a list of ``{target, after_seconds, repeat_every_seconds, stop_on}``.
    An alert freezes a copy when it opens.
    """

    __tablename__ = "escalation_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    alert_kind: Mapped[str] = mapped_column(String(32))
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (UniqueConstraint("circle_id", "alert_kind"),)


#: The policies a new circle starts with (DOMAIN.md; issue "Safety core").
def _step(target: str, after: int, repeat: int | None, stop_on: str) -> dict[str, Any]:
    return {
        "target": target,
        "after_seconds": after,
        "repeat_every_seconds": repeat,
        "stop_on": stop_on,
    }


_MISSED_DEADLINE = [
    _step("doctor", 0, None, "acknowledge"),
    _step("coordinator", 120, 120, "acknowledge"),
    _step("police", 600, None, "resolve"),
]
_IMMEDIATE = [
    _step("coordinator", 0, 60, "acknowledge"),
    _step("police", 0, None, "resolve"),
]
DEFAULT_POLICIES: dict[str, list[dict[str, Any]]] = {
    "missed_arrival": _MISSED_DEADLINE,
    "missed_checkout": _MISSED_DEADLINE,
    "panic": _IMMEDIATE,
    "duress": _IMMEDIATE,
}
