"""The append-only timeline of events per call, visit and alert, and the access log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from oncall.core import ids
from oncall.core.types import BigId, JSONType, UTCDateTime
from oncall.extensions import db

SUBJECTS = ("call", "visit", "alert", "shift", "user", "circle")


class TimelineEvent(db.Model):  # type: ignore[name-defined]
    """One thing that happened to a call, visit or alert. Never updated."""

    __tablename__ = "timeline_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(48))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    __table_args__ = (Index("ix_timeline_subject", "subject_type", "subject_id", "at"),)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "kind": self.kind,
            "actor_id": self.actor_id,
            "data": self.data or {},
        }


class AccessLogEntry(db.Model):  # type: ignore[name-defined]
    """Who read patient data, when, and which record."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    action: Mapped[str] = mapped_column(String(32))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str | None] = mapped_column(String(200))


def record(
    circle_id: int,
    subject_type: str,
    subject_id: int,
    kind: str,
    at: datetime,
    actor_id: int | None = None,
    **data: Any,
) -> None:
    """Add a timeline event to the current transaction (the caller commits)."""
    values = {
        "circle_id": circle_id,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "kind": kind,
        "at": at,
        "actor_id": actor_id,
        "data": jsonable(data),
    }
    if ids.queue_row(TimelineEvent, values) is None:
        db.session.add(TimelineEvent(**values))


def log_access(
    circle_id: int,
    user_id: int,
    subject_type: str,
    subject_id: int | None,
    at: datetime,
    action: str = "read",
    detail: str | None = None,
) -> None:
    """Add an access-log row for a read of patient data (the caller commits)."""
    db.session.add(
        AccessLogEntry(
            circle_id=circle_id,
            user_id=user_id,
            at=at,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            detail=detail,
        )
    )


def events_for(subject_type: str, subject_id: int, circle_id: int) -> list[TimelineEvent]:
    """The timeline of one subject, oldest first."""
    return list(
        db.session.scalars(
            db.select(TimelineEvent)
            .where(
                TimelineEvent.circle_id == circle_id,
                TimelineEvent.subject_type == subject_type,
                TimelineEvent.subject_id == subject_id,
            )
            .order_by(TimelineEvent.at, TimelineEvent.id)
        )
    )


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO strings, ready for a JSON column."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
