"""Notification channels, the outbox, delivery attempts and the console stream."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from oncall.core.types import BigId, JSONType, UTCDateTime
from oncall.extensions import db

CHANNEL_KINDS = ("email", "sms", "webhook")
RECIPIENT_TYPES = ("user", "police_contact")
OUTBOX_STATES = ("pending", "delivered", "failed", "cancelled")


class NotificationChannel(db.Model):  # type: ignore[name-defined]
    """Where a user or a police contact is told: an email address, an SMS number, a webhook.

    A webhook's signing secret is derived from the service's secret key, the
    channel id and ``key_version``; it is never stored.
    """

    __tablename__ = "notification_channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    police_contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("police_contacts.id"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(500))
    label: Mapped[str | None] = mapped_column(String(80))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(db.Model):  # type: ignore[name-defined]
    """One message to one address on one channel, written in the transaction that decided it.

    The relay delivers it with retries and backoff; its id is the idempotency key
    the receiver sees.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    #: What it is about (an alert's step, a deadline's reminder, an alert resolved).
    purpose: Mapped[str] = mapped_column(String(32))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), index=True)
    deadline_id: Mapped[int | None] = mapped_column(ForeignKey("deadlines.id"))
    claim_id: Mapped[int | None] = mapped_column(ForeignKey("escalation_claims.id"))
    #: What ends the message's need: "acknowledge" or "resolve" (None: never).
    stop_on: Mapped[str | None] = mapped_column(String(16))
    recipient_type: Mapped[str] = mapped_column(String(16))
    recipient_id: Mapped[int] = mapped_column(Integer)
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("notification_channels.id"))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    #: The JSON a webhook receives (and the data an email or SMS was written from).
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(300))
    #: What the receiver answered (SMTP reply, HTTP status and message id...).
    receipt: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )


class DeliveryAttempt(db.Model):  # type: ignore[name-defined]
    """One try at delivering an outbox message, and what came of it."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"))
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    #: Receipt on success, the error on failure (never the message's content).
    detail: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (UniqueConstraint("outbox_id", "attempt"),)


class StreamEvent(db.Model):  # type: ignore[name-defined]
    """An event for the consoles' live stream; its id is the stream's ``Last-Event-ID``."""

    __tablename__ = "stream_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(48))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int] = mapped_column(BigId)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    __table_args__ = (Index("ix_stream_events_circle", "circle_id", "id"),)
