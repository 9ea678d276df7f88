"""Alert use cases: the panic button and its cancel, acknowledge, escalate, resolve.

Every function is one transaction: it checks the input, locks the alert row
(:func:`oncall.alerts.lifecycle.lock_alert`), moves it through
:mod:`oncall.alerts.lifecycle` or :mod:`oncall.alerts.engine`, hands the new
outbox rows to a worker (sent once the transaction commits) and commits once.
On any error nothing is committed.

The duress code: a doctor forced to cancel their panic gives the duress code
instead of their check-in code. The answer is exactly the one a real cancel
gets, but the panic stays open and a silent ``duress`` alert opens, which tells
the coordinators and the police and never the doctor's phone.

The reads (the list, one alert, the briefing) are in
:mod:`oncall.alerts.queries` and are offered here too, so that callers need only
this module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from oncall.accounts.codes import CodeMatch, check_code_guarded
from oncall.accounts.models import User
from oncall.alerts import engine, lifecycle
from oncall.alerts.models import ACTIVE_ALERT_STATES, Alert
from oncall.alerts.present import present_one
from oncall.alerts.queries import (
    alert_not_found,
    atomic,
    check_text,
    ensure_visible,
    get_alert,
    get_briefing,
    is_id,
    list_alerts,
    load_alert,
    printable_briefing,
    require_role,
)
from oncall.alerts.schemas import MAX_BIGINT, MAX_CODE, MAX_NOTE
from oncall.core.tenancy import scoped
from oncall.core.timeline import record
from oncall.errors import Conflict, NotFound, ValidationFailed, Validator
from oncall.extensions import db
from oncall.notify import outbox
from oncall.notify.stream import publish
from oncall.visits.checks import check_location
from oncall.visits.common import locked
from oncall.visits.models import Visit

__all__ = [
    "acknowledge",
    "cancel_panic",
    "ensure_visible",
    "escalate",
    "get_alert",
    "get_briefing",
    "list_alerts",
    "panic",
    "printable_briefing",
    "resolve",
]

logger = logging.getLogger(__name__)

#: Roles that act on alerts.
MANAGE_ROLES = ("coordinator", "admin")
#: The resolution note of a panic the doctor cancelled with their check-in code.
CANCEL_NOTE = "Cancelled by the doctor with their code."
#: The answer to every accepted cancel, whichever code was given.
CANCELLED = "cancelled"


# --------------------------------------------------------------------------- helpers


def _visit_not_found(visit_id: int) -> NotFound:
    return NotFound(f"No visit {visit_id}.", code="visit_not_found")


def _lock(actor: User, alert_id: int) -> Alert:
    """The circle's alert, locked for update; NotFound when it is not the circle's."""
    if not is_id(alert_id, MAX_BIGINT):
        raise alert_not_found(alert_id)
    alert = lifecycle.lock_alert(actor.circle_id, alert_id)
    if alert is None:
        raise alert_not_found(alert_id)
    return alert


def _refuse_resolved(alert: Alert) -> None:
    if alert.status == "resolved":
        raise Conflict(f"Alert {alert.id} is already resolved.", code="alert_already_resolved")


def _panic_visit(actor: User, visit_id: int | None) -> Visit | None:
    """The visit a panic is about, locked: the one named (the doctor's own, else 404),
    else the doctor's visit on site, else their next assigned one, else none."""
    mine = scoped(Visit, actor.circle_id).where(Visit.doctor_id == actor.id)
    if visit_id is not None:
        if not is_id(visit_id, MAX_BIGINT):
            raise _visit_not_found(visit_id)
        visit: Visit | None = db.session.scalars(
            locked(mine.where(Visit.id == visit_id), key_share=True)
        ).first()
        if visit is None:
            raise _visit_not_found(visit_id)
        return visit
    on_site = db.session.scalars(locked(
        mine.where(Visit.status == "on_site")
        .order_by(Visit.checked_in_at.desc().nulls_last(), Visit.id.desc())
        .limit(1),
        key_share=True,
    )).first()
    if on_site is not None:
        return on_site
    upcoming: Visit | None = db.session.scalars(locked(
        mine.where(Visit.status == "assigned")
        .order_by(Visit.arrive_by.asc().nulls_last(), Visit.created_at, Visit.id)
        .limit(1),
        key_share=True,
    )).first()
    return upcoming


def _store_location(visit: Visit, place: Mapping[str, float | None], now: datetime) -> None:
    visit.last_lat = place["lat"]
    visit.last_lon = place["lon"]
    visit.last_accuracy_m = place.get("accuracy")
    visit.last_location_at = now


def _has_codes(user: User) -> bool:
    return user.checkin_code_hash is not None and user.duress_code_hash is not None


def _code_error(reason: str) -> ValidationFailed:
    return ValidationFailed("Some fields are not valid.", fields={"code": [reason]})


# --------------------------------------------------------------------------- panic


@atomic
def panic(
    actor: User,
    now: datetime,
    visit_id: int | None = None,
    location: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A doctor presses the panic button: a ``panic`` alert opens and its first steps
    (by default the coordinators and the police, at once) are written in this
    transaction and handed to a worker as soon as it commits.

    Without ``visit_id`` the alert is about the doctor's visit on site, else their
    next assigned visit, else none (then the circle-wide police contacts are told).
    Another doctor's visit is 404. The location, when given, goes on the alert and
    on the visit.
    """
    require_role(actor, ("doctor",))
    v = Validator()
    place = check_location(v, location)
    v.raise_if_any()

    visit = _panic_visit(actor, visit_id)
    if visit is not None and place is not None:
        _store_location(visit, place, now)
    again = _recent_panic(actor, visit, now)
    if again is not None:
        # A second press (or a phone retrying a request whose answer it lost) while
        # the first is being escalated: one alert, the press written down, and the
        # same answer as the first time.
        if place is not None:
            again.lat, again.lon = place["lat"], place["lon"]
            again.accuracy_m, again.located_at = place.get("accuracy"), now
        record(actor.circle_id, "alert", again.id, "alert.pressed_again", now, actor.id,
               location=place)
        publish(actor.circle_id, "alert.pressed_again", "alert", again.id, now)
        out = {"alert_id": again.id, "status": "open", "opened_at": again.opened_at}
        db.session.commit()
        logger.warning("panic: alert %s pressed again by doctor %s", again.id, actor.id)
        return out
    alert = engine.open_alert(
        circle_id=actor.circle_id, kind="panic", now=now, visit=visit, doctor_id=actor.id,
        location=dict(place) if place is not None else None, actor_id=actor.id,
    )
    handed = outbox.hand_off_new()
    out = {"alert_id": alert.id, "status": alert.status, "opened_at": alert.opened_at}
    db.session.commit()
    logger.warning(
        "panic: alert %s opened by doctor %s (visit %s), %s messages",
        alert.id, actor.id, alert.visit_id, len(handed),
    )
    return out


#: A panic pressed again within this time joins the alert it opened.
REPRESS_WINDOW = timedelta(minutes=2)


def _recent_panic(actor: User, visit: Visit | None, now: datetime) -> Alert | None:
    """The doctor's active panic about the same visit opened in the last two minutes."""
    same_visit = Alert.visit_id.is_(None) if visit is None else Alert.visit_id == visit.id
    found: Alert | None = db.session.scalars(locked(
        scoped(Alert, actor.circle_id)
        .where(Alert.kind == "panic", Alert.doctor_id == actor.id,
               Alert.status.in_(ACTIVE_ALERT_STATES), same_visit,
               Alert.opened_at >= now - REPRESS_WINDOW)
        .order_by(Alert.id.desc())
        .limit(1)
    )).first()
    return found


def _duress(actor: User, panic_alert: Alert, now: datetime) -> Alert:
    """Open the silent duress alert of a cancel under duress (or mark the one still active)."""
    same_visit = (
        Alert.visit_id.is_(None) if panic_alert.visit_id is None
        else Alert.visit_id == panic_alert.visit_id
    )
    active: Alert | None = db.session.scalars(locked(
        scoped(Alert, actor.circle_id)
        .where(Alert.kind == "duress", Alert.doctor_id == actor.id,
               Alert.status.in_(ACTIVE_ALERT_STATES), same_visit)
        .order_by(Alert.id.desc())
        .limit(1)
    )).first()
    if active is not None:
        # Already telling everyone: say it again on the consoles, keep one alert.
        record(actor.circle_id, "alert", active.id, "alert.duress_repeated", now, actor.id,
               panic_alert_id=panic_alert.id)
        publish(actor.circle_id, "alert.duress_repeated", "alert", active.id, now,
                panic_alert_id=panic_alert.id)
        return active
    location = None
    if panic_alert.lat is not None and panic_alert.lon is not None:
        location = {"lat": panic_alert.lat, "lon": panic_alert.lon,
                    "accuracy": panic_alert.accuracy_m}
    visit = db.session.get(Visit, panic_alert.visit_id) if panic_alert.visit_id else None
    return engine.open_alert(
        circle_id=actor.circle_id, kind="duress", now=now, visit=visit, doctor_id=actor.id,
        location=location, located_at=panic_alert.located_at, actor_id=actor.id,
    )


@atomic
def cancel_panic(actor: User, alert_id: int, code: str | None, now: datetime) -> dict[str, Any]:
    """The doctor cancels their own panic with their check-in code.

    - Check-in code: the panic is resolved (the police already told are stood down).
    - Duress code: the same answer, byte for byte, but the panic stays open and a
      silent ``duress`` alert opens (or, if one is still active, it is marked again).
      Also on a panic already resolved: a doctor forced to cancel twice is still heard.
    - Wrong code: 422 naming ``code``; the attempt is written on the alert's timeline.
    - No codes set: 422 naming ``code``.

    A cancel of a panic already resolved answers like a first one. Another
    doctor's alert, or an alert that is not a panic, is 404.
    """
    require_role(actor, ("doctor",))
    load_alert(actor, alert_id)  # 404 first: the code is not checked against others' alerts
    v = Validator()
    check_text(v, "code", code, MAX_CODE, required=True)
    v.raise_if_any()
    assert code is not None
    if not _has_codes(actor):
        raise _code_error("Set your codes first.")

    # Both hashes are verified whatever the code is, before any row is locked.
    match = check_code_guarded(actor, code, now)
    if match is not CodeMatch.CHECKIN and match is not CodeMatch.DURESS:
        record(actor.circle_id, "alert", alert_id, "alert.cancel_refused", now, actor.id,
               reason="wrong_code")
        db.session.commit()
        logger.warning("panic %s: cancel with a wrong code by doctor %s", alert_id, actor.id)
        raise _code_error("This code is not right.")

    alert = _lock(actor, alert_id)
    if match is CodeMatch.CHECKIN:
        lifecycle.resolve(alert, actor.id, CANCEL_NOTE, now)
    else:
        duress = _duress(actor, alert, now)
        record(actor.circle_id, "alert", alert.id, "alert.cancelled_under_duress", now,
               actor.id, duress_alert_id=duress.id)
        logger.warning("panic %s: duress code given; duress alert %s", alert.id, duress.id)
    outbox.hand_off_new()
    out = {"alert_id": alert.id, "status": CANCELLED}
    db.session.commit()
    return out


# --------------------------------------------------------------------------- lifecycle


@atomic
def acknowledge(actor: User, alert_id: int, now: datetime) -> dict[str, Any]:
    """Take charge of the alert. The first coordinator takes it; a later one gets the
    alert showing who did (not an error). 409 ``alert_already_resolved`` when resolved."""
    require_role(actor, MANAGE_ROLES)
    alert = _lock(actor, alert_id)
    _refuse_resolved(alert)
    took = lifecycle.acknowledge(alert, actor.id, now)
    outbox.hand_off_new()
    out = present_one(alert)
    db.session.commit()
    if took:
        logger.info("alert %s acknowledged by %s", alert.id, actor.id)
    return out


@atomic
def escalate(actor: User, alert_id: int, now: datetime) -> dict[str, Any]:
    """Go to the police step now: the police contacts are told on this commit.

    Escalating again after the police were told does not tell them twice. 409
    ``alert_already_resolved`` when resolved.
    """
    require_role(actor, MANAGE_ROLES)
    alert = _lock(actor, alert_id)
    _refuse_resolved(alert)
    fired = lifecycle.escalate(alert, actor.id, now)
    handed = outbox.hand_off_new()
    out = present_one(alert)
    db.session.commit()
    logger.info("alert %s escalated by %s: %s steps, %s messages",
                alert.id, actor.id, fired, len(handed))
    return out


@atomic
def resolve(actor: User, alert_id: int, note: str | None, now: datetime) -> dict[str, Any]:
    """Close the alert with a note: every step stops, waiting messages are cancelled,
    the police contacts already told are stood down. 422 ``note`` when missing or
    blank; 409 ``alert_already_resolved`` when resolved."""
    require_role(actor, MANAGE_ROLES)
    v = Validator()
    check_text(v, "note", note, MAX_NOTE, required=True)
    v.raise_if_any()
    assert note is not None

    alert = _lock(actor, alert_id)
    _refuse_resolved(alert)
    lifecycle.resolve(alert, actor.id, note, now)
    outbox.hand_off_new()
    out = present_one(alert)
    db.session.commit()
    logger.info("alert %s resolved by %s", alert.id, actor.id)
    return out
