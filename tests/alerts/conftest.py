"""Shared helpers of the alerts API tests: reachable people, codes, alerts opened by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from oncall.accounts.codes import hash_code
from oncall.alerts.engine import open_alert
from oncall.alerts.models import Alert, EscalationClaim
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.core.timeline import AccessLogEntry, TimelineEvent
from oncall.extensions import db
from oncall.notify.models import NotificationChannel, OutboxMessage
from tests import factories as f

API = "/api/v1"
CHECKIN_CODE = "1234"
DURESS_CODE = "9876"


def webhook(owner: Any, url: str, *, contact: bool = False) -> None:
    """Give a user (or a police contact) a webhook channel, so that steps reach them."""
    now = utcnow()
    db.session.add(NotificationChannel(
        circle_id=owner.circle_id,
        user_id=None if contact else owner.id,
        police_contact_id=owner.id if contact else None,
        kind="webhook", address=url, active=True, key_version=1,
        created_at=now, updated_at=now,
    ))
    db.session.commit()


@dataclass
class Reach:
    """The police contacts of a world that has channels for everyone."""

    police: Any
    circle_police: Any


def reachable(world: Any) -> Reach:
    """Webhooks for the doctor and the coordinator; a zone police contact and a
    circle-wide one (told when an alert has no zone)."""
    webhook(world.doctor, "https://hooks.example.org/doctor?token=secret")
    webhook(world.coordinator, "https://hooks.example.org/coordinator")
    police = f.make_police_contact(
        world.circle, world.zone, name="Zone police",
        webhook_url="https://police.example.org/zone", protocol_reference="PZ-NORD-7",
    )
    circle_police = f.make_police_contact(
        world.circle, None, name="Circle police",
        webhook_url="https://police.example.org/circle",
    )
    return Reach(police, circle_police)


def set_codes(user: Any) -> None:
    """Give a doctor a check-in code and a duress code."""
    user.checkin_code_hash = hash_code(CHECKIN_CODE)
    user.duress_code_hash = hash_code(DURESS_CODE)
    user.codes_set_at = utcnow()
    db.session.commit()


def open_by_hand(
    world: Any, kind: str = "missed_arrival", visit: Any = None, doctor: Any = None
) -> Alert:
    """An alert opened now through the engine (its due steps fired), committed."""
    alert = open_alert(
        circle_id=world.circle.id, kind=kind, now=utcnow(), visit=visit,
        doctor_id=(doctor or world.doctor).id,
    )
    db.session.commit()
    return alert


def fresh(model: Any, row_id: int) -> Any:
    """The row as committed (the requests ran in their own sessions)."""
    db.session.rollback()
    db.session.expire_all()
    return db.session.get(model, row_id)


def messages(alert_id: int, recipient_type: str | None = None,
             recipient_id: int | None = None) -> list[OutboxMessage]:
    db.session.rollback()
    stmt = select(OutboxMessage).where(OutboxMessage.alert_id == alert_id)
    if recipient_type is not None:
        stmt = stmt.where(OutboxMessage.recipient_type == recipient_type)
    if recipient_id is not None:
        stmt = stmt.where(OutboxMessage.recipient_id == recipient_id)
    return list(db.session.scalars(stmt.order_by(OutboxMessage.id)))


def claims(alert_id: int) -> list[EscalationClaim]:
    db.session.rollback()
    return list(db.session.scalars(
        select(EscalationClaim).where(EscalationClaim.alert_id == alert_id)
        .order_by(EscalationClaim.level)
    ))


def alerts(kind: str | None = None) -> list[Alert]:
    db.session.rollback()
    stmt = select(Alert)
    if kind is not None:
        stmt = stmt.where(Alert.kind == kind)
    return list(db.session.scalars(stmt.order_by(Alert.id)))


def event_kinds(alert_id: int) -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(
        select(TimelineEvent.kind)
        .where(TimelineEvent.subject_type == "alert", TimelineEvent.subject_id == alert_id)
        .order_by(TimelineEvent.id)
    ))


def access_rows(user_id: int) -> list[AccessLogEntry]:
    db.session.rollback()
    return list(db.session.scalars(
        select(AccessLogEntry).where(AccessLogEntry.user_id == user_id)
        .order_by(AccessLogEntry.id)
    ))


@pytest.fixture
def sender(app: Any, monkeypatch: pytest.MonkeyPatch) -> dispatch.NullSender:
    """A fresh recorder of the work handed to workers after each commit."""
    recorder = dispatch.NullSender()
    monkeypatch.setitem(app.extensions, dispatch.EXTENSION_KEY, recorder)
    return recorder
