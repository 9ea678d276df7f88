"""Shifts: a doctor on duty in a zone between two instants."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from oncall.core.types import UTCDateTime
from oncall.extensions import db


class Shift(db.Model):  # type: ignore[name-defined]
    """A doctor on duty in one zone from ``starts_at`` (inclusive) to ``ends_at`` (exclusive).

    Stored in UTC; overlapping shifts are allowed (two doctors on duty).
    """

    __tablename__ = "shifts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    circle_id: Mapped[int] = mapped_column(ForeignKey("circles.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    doctor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_shifts_zone_period", "zone_id", "starts_at", "ends_at"),
    )
