"""Rota use cases: shifts and who is on duty."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from oncall.accounts.models import User
from oncall.core.clock import as_utc
from oncall.extensions import db
from oncall.rota.models import Shift


def on_duty(circle_id: int, zone_id: int, at: datetime) -> list[Shift]:
    """Shifts of active doctors covering ``zone_id`` at instant ``at``.

    A shift covers ``starts_at <= at < ends_at``. Ordered by start, then id.
    """
    at = as_utc(at)
    stmt = (
        select(Shift)
        .join(User, User.id == Shift.doctor_id)
        .where(
            Shift.circle_id == circle_id,
            Shift.zone_id == zone_id,
            Shift.starts_at <= at,
            Shift.ends_at > at,
            User.active.is_(True),
        )
        .order_by(Shift.starts_at, Shift.id)
    )
    return list(db.session.scalars(stmt))
