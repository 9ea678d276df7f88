"""Home visits and their state machine."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from oncall.core.patient import PatientColumns
from oncall.core.types import BigId, UTCDateTime
from oncall.extensions import db

STATES = ("unassigned", "assigned", "on_site", "completed", "cancelled")
OPEN_STATES = ("unassigned", "assigned", "on_site")

#: Allowed transitions; anything else answers 409.
TRANSITIONS: dict[str, frozenset[str]] = {
    "unassigned": frozenset({"assigned", "cancelled"}),
    "assigned": frozenset({"assigned", "unassigned", "on_site", "cancelled"}),
    "on_site": frozenset({"completed"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}


class Visit(PatientColumns, db.Model):  # type: ignore[name-defined]
    """A home visit created from a call and assigned to a doctor on duty."""

    __tablename__ = "visits"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"))
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    doctor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16))
    #: Why the visit is unassigned (nobody on duty, doctor deactivated...).
    unassigned_reason: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    identity_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The dispatcher's estimate of arrival; the arrival deadline.
    arrive_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    outcome_note: Mapped[str | None] = mapped_column(Text)
    last_lat: Mapped[float | None] = mapped_column(Float)
    last_lon: Mapped[float | None] = mapped_column(Float)
    last_accuracy_m: Mapped[float | None] = mapped_column(Float)
    last_location_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Position in the doctor's itinerary when the dispatcher orders it by hand.
    sequence: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_visits_doctor_status", "doctor_id", "status"),
        Index("ix_visits_circle_created", "circle_id", "created_at"),
        Index("ix_visits_zone_status", "zone_id", "status"),
    )
