"""Reading alerts: the list, one alert with its timeline, steps and messages, the briefing.

An alert linked to a visit shows where a patient lives (the doctor's location,
the briefing's address and patient): each such read is written to the access
log in the same transaction, under the visit, so that an audit of who read a
patient's data finds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case

from oncall.accounts.models import User
from oncall.alerts import briefing as briefings
from oncall.alerts.models import ALERT_STATES, Alert, EscalationClaim
from oncall.alerts.present import briefing_page, present_detail, present_many
from oncall.alerts.schemas import MAX_BIGINT
from oncall.circles.models import ALERT_KINDS, Circle
from oncall.circles.services import police_contacts_for_zone
from oncall.core.paging import DEFAULT_LIMIT, check_page, envelope, page_of
from oncall.core.tenancy import scoped
from oncall.core.timeline import events_for, log_access
from oncall.errors import NotFound, Validator
from oncall.extensions import db
from oncall.notify.models import OutboxMessage
from oncall.visits.checks import check_text, is_id
from oncall.visits.common import atomic, require_role

#: Roles that read alerts (a doctor only reaches their own panic, to cancel it).
READ_ROLES = ("dispatcher", "coordinator", "admin")


# The visits' helpers serve here too: alerts read visit rows and share their checks.
__all__ = ["atomic", "check_text", "is_id", "require_role"]


def circle_timezone(circle_id: int) -> str:
    """The circle's time zone (the briefing's times are local to it)."""
    circle = db.session.get(Circle, circle_id)
    return circle.timezone if circle is not None and circle.timezone else "Europe/Brussels"


# --------------------------------------------------------------------------- reads


def alert_not_found(alert_id: int) -> NotFound:
    """The 404 of an alert that does not exist or that the user may not see."""
    return NotFound(f"No alert {alert_id}.", code="alert_not_found")


def _visible(actor: User, alert_id: int) -> Any:
    """``SELECT alert`` of the ones ``actor`` may see: the circle's; a doctor's own panics."""
    if not is_id(alert_id, MAX_BIGINT):
        raise alert_not_found(alert_id)
    stmt: Any = scoped(Alert, actor.circle_id).where(Alert.id == alert_id)
    if actor.role == "doctor":
        stmt = stmt.where(Alert.doctor_id == actor.id, Alert.kind == "panic")
    return stmt


def ensure_visible(actor: User, alert_id: int) -> None:
    """Raise NotFound unless ``actor`` may see the alert. Reads only.

    Views of an alert's actions call it before parsing the body, so that another
    circle's alert answers 404 whatever the body holds.
    """
    stmt = _visible(actor, alert_id).with_only_columns(Alert.id)
    if db.session.scalar(stmt) is None:
        raise alert_not_found(alert_id)


def load_alert(actor: User, alert_id: int) -> Alert:
    """The alert if ``actor`` may see it (not locked), else NotFound."""
    alert: Alert | None = db.session.scalars(_visible(actor, alert_id)).first()
    if alert is None:
        raise alert_not_found(alert_id)
    return alert


def _log_read(actor: User, alert: Alert, now: datetime, action: str) -> None:
    if alert.visit_id is not None:
        log_access(actor.circle_id, actor.id, "visit", alert.visit_id, now,
                   action=action, detail=f"alert {alert.id}")


def _check_filters(
    v: Validator,
    status: Sequence[str],
    kind: Sequence[str],
    visit_id: int | None,
    doctor_id: int | None,
    limit: int,
    offset: int,
) -> None:
    if any(s not in ALERT_STATES for s in status):
        v.add("status", f"Must be one of: {', '.join(ALERT_STATES)}.")
    if any(k not in ALERT_KINDS for k in kind):
        v.add("kind", f"Must be one of: {', '.join(ALERT_KINDS)}.")
    if visit_id is not None and not is_id(visit_id, MAX_BIGINT):
        v.add("visit_id", "Not a valid id.")
    if doctor_id is not None and not is_id(doctor_id):
        v.add("doctor_id", "Not a valid id.")
    check_page(limit, offset, v)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


@atomic
def list_alerts(
    actor: User,
    *,
    status: str | Sequence[str] | None = None,
    kind: str | Sequence[str] | None = None,
    visit_id: int | None = None,
    doctor_id: int | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    now: datetime,
) -> dict[str, Any]:
    """A page of the circle's alerts: open and acknowledged first, then resolved;
    newest first within each (id as tie-break).

    Answers ``{"items", "limit", "offset", "next_offset"}``. Every alert returned
    that is linked to a visit is written to the access log.
    """
    require_role(actor, READ_ROLES)
    states, kinds = _as_list(status), _as_list(kind)
    v = Validator()
    _check_filters(v, states, kinds, visit_id, doctor_id, limit, offset)
    v.raise_if_any()

    stmt = scoped(Alert, actor.circle_id)
    if states:
        stmt = stmt.where(Alert.status.in_(states))
    if kinds:
        stmt = stmt.where(Alert.kind.in_(kinds))
    if visit_id is not None:
        stmt = stmt.where(Alert.visit_id == visit_id)
    if doctor_id is not None:
        stmt = stmt.where(Alert.doctor_id == doctor_id)
    closed = case((Alert.status == "resolved", 1), else_=0)
    stmt = stmt.order_by(closed, Alert.opened_at.desc(), Alert.id.desc())
    page = envelope(list(db.session.scalars(page_of(stmt, limit, offset))), limit, offset)
    alerts: list[Alert] = page["items"]
    page["items"] = present_many(alerts, actor.circle_id)
    for alert in alerts:
        _log_read(actor, alert, now, "alert_list")
    db.session.commit()
    return page


@atomic
def get_alert(actor: User, alert_id: int, now: datetime) -> dict[str, Any]:
    """One alert with its frozen policy, timeline, fired steps and messages; logs the read."""
    require_role(actor, READ_ROLES)
    alert = load_alert(actor, alert_id)
    timeline = events_for("alert", alert.id, actor.circle_id)
    claims = list(db.session.scalars(
        scoped(EscalationClaim, actor.circle_id)
        .where(EscalationClaim.alert_id == alert.id)
        .order_by(EscalationClaim.level, EscalationClaim.id)
    ))
    deliveries = list(db.session.scalars(
        scoped(OutboxMessage, actor.circle_id)
        .where(OutboxMessage.alert_id == alert.id)
        .order_by(OutboxMessage.id)
    ))
    out = present_detail(alert, timeline, claims, deliveries)
    _log_read(actor, alert, now, "alert_read")
    db.session.commit()
    return out


@atomic
def get_briefing(actor: User, alert_id: int, now: datetime) -> dict[str, Any]:
    """The police briefing of the alert (the zone's first police contact's protocol
    reference, else the circle's), as the police received it; logs the read (under
    the alert when no visit is linked: the briefing still names the doctor)."""
    require_role(actor, READ_ROLES)
    alert = load_alert(actor, alert_id)
    contacts = police_contacts_for_zone(actor.circle_id, alert.zone_id)
    out = briefings.build(alert, contacts[0] if contacts else None)
    if alert.visit_id is None:
        log_access(actor.circle_id, actor.id, "alert", alert.id, now, action="alert_briefing")
    _log_read(actor, alert, now, "alert_briefing")
    db.session.commit()
    return out



def printable_briefing(actor: User, briefing: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The briefing as the printable page shows it, in the circle's local time."""
    return briefing_page(briefing, circle_timezone(actor.circle_id), now)
