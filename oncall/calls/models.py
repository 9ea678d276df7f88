"""Callers, calls and the raw telephone-system events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from oncall.core.patient import PatientColumns
from oncall.core.types import BigId, UTCDateTime
from oncall.extensions import db

OUTCOMES = (
    "consultation_booked",
    "transferred_to_doctor",
    "home_visit",
    "redirected_112",
    "advice_line",
    "no_action",
)
TELEPHONY_EVENTS = ("ringing", "answered", "ended")
CALL_STATES = ("ringing", "answered", "ended")


class Caller(db.Model):  # type: ignore[name-defined]
    """A phone number that has called the circle (E.164)."""

    __tablename__ = "callers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"))
    number: Mapped[str] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(160))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("circle_id", "number"),)


class Call(PatientColumns, db.Model):  # type: ignore[name-defined]
    """One call to the central number, from ringing to outcome."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"))
    #: The telephone system's reference; None for a call logged by hand.
    call_ref: Mapped[str | None] = mapped_column(String(120))
    caller_id: Mapped[int | None] = mapped_column(ForeignKey("callers.id"), index=True)
    caller_number: Mapped[str | None] = mapped_column(String(20))
    caller_name: Mapped[str | None] = mapped_column(String(160))
    line: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default="answered")
    recording_ref: Mapped[str | None] = mapped_column(String(200))
    ringing_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The dispatcher who handled the call (answered it or logged it).
    dispatcher_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    identity_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    identity_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("circle_id", "call_ref"),
        Index("ix_calls_circle_created", "circle_id", "created_at"),
    )


class TelephonyEvent(db.Model):  # type: ignore[name-defined]
    """A ringing / answered / ended event as the telephone system sent it.

    The unique key makes a replayed or duplicated event a no-op.
    """

    __tablename__ = "telephony_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"))
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    call_ref: Mapped[str] = mapped_column(String(120))
    event: Mapped[str] = mapped_column(String(16))
    caller_number: Mapped[str | None] = mapped_column(String(20))
    line: Mapped[str | None] = mapped_column(String(40))
    recording_ref: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("circle_id", "call_ref", "event"),)
