"""Deadlines, alerts and escalation claims.

A deadline is a row with ``due_at`` and a state; an open alert holds the policy it
was opened with, how far each step has gone, and ``next_step_at``. Nothing about
time lives only in a broker or in memory: the engine (:mod:`oncall.alerts.engine`)
reads these rows and moves them one step under a row lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from oncall.core.types import BigId, JSONType, UTCDateTime
from oncall.extensions import db

DEADLINE_KINDS = ("arrival", "departure")
DEADLINE_STATES = ("armed", "met", "missed", "cancelled")
#: The alert a missed deadline of each kind opens.
MISSED_KIND = {"arrival": "missed_arrival", "departure": "missed_checkout"}

ALERT_STATES = ("open", "acknowledged", "resolved")
ACTIVE_ALERT_STATES = ("open", "acknowledged")


class Deadline(db.Model):  # type: ignore[name-defined]
    """A visit's arrival or departure deadline: one row per visit and kind, moved in place."""

    __tablename__ = "deadlines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    #: The doctor who must meet it (the visit's doctor when it was armed).
    doctor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: When to remind the doctor (departure only); None once sent or when not wanted.
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    armed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Minutes added by the doctor's extensions.
    extended_minutes: Mapped[int] = mapped_column(Integer, default=0)
    #: The alert its miss opened.
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", use_alter=True))

    __table_args__ = (
        UniqueConstraint("visit_id", "kind"),
        # The sweep's two questions: which armed deadlines are due, which reminders.
        Index(
            "ix_deadlines_armed_due",
            "due_at",
            postgresql_where=text("state = 'armed'"),
            sqlite_where=text("state = 'armed'"),
        ),
        Index(
            "ix_deadlines_armed_remind",
            "remind_at",
            postgresql_where=text("state = 'armed' AND remind_at IS NOT NULL"),
            sqlite_where=text("state = 'armed' AND remind_at IS NOT NULL"),
        ),
    )


class Alert(db.Model):  # type: ignore[name-defined]
    """A missed deadline, a panic or a duress code, and how far its escalation has gone."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), index=True)
    doctor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id"))
    deadline_id: Mapped[int | None] = mapped_column(ForeignKey("deadlines.id"))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: When the alert was due to open (the deadline's due_at; opened_at for panic).
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The escalation steps, copied from the circle's policy when the alert opened.
    policy: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    #: How many times each step of ``policy`` has fired, by step index.
    progress: Mapped[list[int]] = mapped_column(JSONType)
    #: Number of steps fired so far; the claim of the next one is (id, level + 1).
    level: Mapped[int] = mapped_column(Integer, default=0)
    #: When the engine must look at this alert again; None when nothing is left.
    next_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    located_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_alerts_circle_status", "circle_id", "status", "opened_at"),
        Index(
            "ix_alerts_next_step",
            "next_step_at",
            postgresql_where=text("status <> 'resolved' AND next_step_at IS NOT NULL"),
            sqlite_where=text("status <> 'resolved' AND next_step_at IS NOT NULL"),
        ),
    )


class EscalationClaim(db.Model):  # type: ignore[name-defined]
    """One fired step of one alert. The unique keys make a step fire once, whoever races."""

    __tablename__ = "escalation_claims"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    level: Mapped[int] = mapped_column(Integer)
    step_index: Mapped[int] = mapped_column(Integer)
    #: 0 for the step's first firing, then 1, 2, ... for its repeats.
    repeat_no: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(16))
    #: When the step was due, and when it fired.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Outbox rows written for it.
    messages: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("alert_id", "level"),
        UniqueConstraint("alert_id", "step_index", "repeat_no"),
    )
