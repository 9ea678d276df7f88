"""Circle setup use cases: the circle, zones and police contacts.

Each public function is one transaction: everything is validated first, then
written and committed once. Nothing here reads the Flask request. Escalation
policies live in :mod:`oncall.circles.policies` (re-exported here).
"""

from __future__ import annotations

import copy
import ipaddress
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from oncall.accounts.checks import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    clean_text,
    normalise_email,
    normalise_phone,
    reject_unknown,
    valid_email,
)
from oncall.accounts.models import User
from oncall.accounts.passwords import hash_password
from oncall.accounts.services import MAX_ID, require_admin
from oncall.circles.models import (
    ALERT_KINDS,
    DEFAULT_POLICIES,
    Circle,
    EscalationPolicy,
    PoliceContact,
    Zone,
)
from oncall.circles.policies import (
    MAX_STEP_SECONDS,
    MAX_STEPS,
    PolicyView,
    get_policy,
    list_policies,
    policy_steps,
    replace_policy,
)
from oncall.core.checks import unique_or_422
from oncall.core.paging import DEFAULT_LIMIT, check_page, envelope, page_of
from oncall.core.tenancy import get_in_circle, scoped
from oncall.core.timeline import record
from oncall.errors import Conflict, Validator
from oncall.extensions import db

logger = logging.getLogger(__name__)

#: Bounds of the circle's deadline settings, in minutes (inclusive).
ARRIVAL_MINUTES = (5, 240)
VISIT_MINUTES = (5, 480)
REMINDER_MINUTES = (0, 60)
MAX_PROTOCOL_REFERENCE = 120
_SETTINGS = {"arrival_minutes": ARRIVAL_MINUTES, "visit_minutes": VISIT_MINUTES,
             "reminder_minutes": REMINDER_MINUTES}


def _text(v: Validator, data: Mapping[str, Any], name: str, limit: int, *,
          required: bool = False) -> str | None:
    """The trimmed text of ``data[name]`` (None if blank), or an error on ``name``."""
    text = clean_text(data.get(name))
    if text is None:
        if required:
            v.add(name, "Must not be empty.")
        return None
    if len(text) > limit:
        v.add(name, f"Longer than maximum length {limit}.")
        return None
    return text


def _valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _valid_country(code: str) -> bool:
    return len(code) == 2 and code.isalpha() and code.upper() in phonenumbers.SUPPORTED_REGIONS


def _name_taken(circle_id: int, name: str) -> Any:
    return db.session.scalars(
        select(Circle.id).where(func.lower(Circle.name) == name.lower(), Circle.id != circle_id)
    ).first()


# --- the circle ------------------------------------------------------------------------


def create_circle(
    name: str,
    admin_email: str,
    admin_password: str,
    now: datetime,
    timezone: str | None = None,
    country: str | None = None,
    admin_name: str | None = None,
) -> tuple[Circle, User]:
    """A new circle with its default escalation policies and first admin, in one transaction.

    A taken circle name answers 409 ``circle_exists``; bad fields a 422 naming each.
    """
    settings = current_app.config["ONCALL"]
    tz = (timezone or settings.default_timezone).strip()
    cc = (country or settings.default_country).strip().upper()
    v = Validator()
    circle_name = _text(v, {"name": name}, "name", 120, required=True)
    v.check(_valid_timezone(tz), "timezone", "Not a known time zone.")
    v.check(_valid_country(cc), "country", "Not a known two-letter country code.")
    email = normalise_email(admin_email or "")
    if not valid_email(email):
        v.add("admin_email", "Not a valid email address.")
    else:
        if db.session.scalars(select(User.id).where(User.email == email)).first() is not None:
            v.add("admin_email", "This email is already used by another account.")
    password = admin_password or ""
    v.check(PASSWORD_MIN <= len(password) <= PASSWORD_MAX, "admin_password",
            f"Must be between {PASSWORD_MIN} and {PASSWORD_MAX} characters.")
    person = _text(v, {"admin_name": admin_name}, "admin_name", 120) or "Administrator"
    v.raise_if_any()
    assert circle_name is not None
    if _name_taken(0, circle_name):
        raise Conflict("A circle with this name exists.", code="circle_exists",
                       fields={"name": ["A circle with this name exists."]})
    circle = Circle(name=circle_name, timezone=tz, country=cc, created_at=now)
    db.session.add(circle)
    try:
        db.session.flush()
        admin = User(
            circle_id=circle.id,
            email=email,
            name=person,
            role="admin",
            language="fr",
            password_hash=hash_password(password),
            active=True,
            created_at=now,
        )
        db.session.add(admin)
        for kind in ALERT_KINDS:
            db.session.add(
                EscalationPolicy(
                    circle_id=circle.id,
                    alert_kind=kind,
                    steps=copy.deepcopy(DEFAULT_POLICIES[kind]),
                    updated_at=now,
                )
            )
        db.session.flush()
        record(circle.id, "circle", circle.id, "circle.created", now, admin.id)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("A circle with this name or an account with this email exists.",
                       code="circle_exists") from None
    logger.info("circle %s created with admin %s", circle.id, admin.id)
    return circle, admin


def get_circle(actor: User) -> Circle:
    """The actor's circle."""
    return db.session.scalars(select(Circle).where(Circle.id == actor.circle_id)).one()


def _check_settings(v: Validator, data: Mapping[str, Any], circle: Circle) -> dict[str, Any]:
    """The deadline settings and the police protocol reference given in ``data``, checked.

    The reminder must come before the departure deadline: ``reminder_minutes`` is
    less than ``visit_minutes`` (the new values, or the circle's when not given).
    """
    clean: dict[str, Any] = {}
    for name, (low, high) in _SETTINGS.items():
        if name in data:
            value = data[name]
            if v.check(isinstance(value, int) and not isinstance(value, bool)
                       and low <= value <= high, name,
                       f"Must be a whole number from {low} to {high}."):
                clean[name] = value
    visit = clean.get("visit_minutes", circle.visit_minutes)
    reminder = clean.get("reminder_minutes", circle.reminder_minutes)
    if ("visit_minutes" in clean or "reminder_minutes" in clean) and reminder >= visit:
        field = "reminder_minutes" if "reminder_minutes" in clean else "visit_minutes"
        v.add(field, f"The reminder ({reminder} min) must come before the end of the visit "
                     f"({visit} min).")
    if "police_protocol_reference" in data:
        clean["police_protocol_reference"] = _text(
            v, data, "police_protocol_reference", MAX_PROTOCOL_REFERENCE)
    return clean


def update_circle(actor: User, data: Mapping[str, Any], now: datetime) -> Circle:
    """Change the circle's name, time zone, country, deadline settings or police
    protocol reference (admin only)."""
    require_admin(actor)
    circle = db.session.scalars(
        select(Circle).where(Circle.id == actor.circle_id).with_for_update()
    ).one()
    v = Validator()
    reject_unknown(v, data, ("name", "timezone", "country", "police_protocol_reference",
                             *_SETTINGS))
    clean = _check_settings(v, data, circle)
    if "name" in data:
        name = _text(v, data, "name", 120, required=True)
        if name is not None:
            if _name_taken(circle.id, name):
                v.add("name", "Another circle has this name.")
            else:
                clean["name"] = name
    if "timezone" in data:
        tz = clean_text(data["timezone"]) or ""
        if v.check(_valid_timezone(tz), "timezone", "Not a known time zone."):
            clean["timezone"] = tz
    if "country" in data:
        cc = (clean_text(data["country"]) or "").upper()
        if v.check(_valid_country(cc), "country", "Not a known two-letter country code."):
            clean["country"] = cc
    v.raise_if_any()
    changed = _apply(circle, clean)
    if changed:
        record(circle.id, "circle", circle.id, "circle.updated", now, actor.id, fields=changed)
    with unique_or_422("name", "Another circle has this name."):
        db.session.commit()
    return circle


# --- zones -----------------------------------------------------------------------------


def list_zones(actor: User, *, limit: int = DEFAULT_LIMIT, offset: int = 0) -> dict[str, Any]:
    """A page of the circle's zones, by name."""
    check_page(limit, offset)
    stmt = scoped(Zone, actor.circle_id).order_by(func.lower(Zone.name), Zone.id)
    return envelope(list(db.session.scalars(page_of(stmt, limit, offset))), limit, offset)


def _validate_zone(v: Validator, data: Mapping[str, Any], circle_id: int,
                   zone_id: int | None, *, creating: bool) -> dict[str, Any]:
    reject_unknown(v, data, ("name", "code", "active"))
    clean: dict[str, Any] = {}
    if creating or "name" in data:
        name = _text(v, data, "name", 120, required=True)
        if name is not None:
            clash = scoped(Zone, circle_id).where(func.lower(Zone.name) == name.lower())
            if zone_id is not None:
                clash = clash.where(Zone.id != zone_id)
            if db.session.scalars(clash).first() is not None:
                v.add("name", "Another zone of the circle has this name.")
            else:
                clean["name"] = name
    if "code" in data:
        clean["code"] = _text(v, data, "code", 32)
    if "active" in data and v.check(
        isinstance(data["active"], bool), "active", "Not a valid boolean."
    ):
        clean["active"] = data["active"]
    return clean


def _apply(row: Any, clean: Mapping[str, Any]) -> list[str]:
    """Set the cleaned values on ``row``; the names of the fields that changed."""
    changed = sorted(k for k, val in clean.items() if getattr(row, k) != val)
    for key in changed:
        setattr(row, key, clean[key])
    return changed


def _save_zone(actor: User, zone: Zone, now: datetime, kind: str | None, **data: Any) -> None:
    """Flush, record ``kind`` (if any) and commit; a name taken meanwhile is a 422."""
    with unique_or_422("name", "Another zone of the circle has this name."):
        db.session.flush()
        if kind:
            record(actor.circle_id, "circle", actor.circle_id, kind, now, actor.id,
                   zone_id=zone.id, **data)
        db.session.commit()


def create_zone(actor: User, data: Mapping[str, Any], now: datetime) -> Zone:
    """A new zone of the actor's circle (admin only); the name is unique in the circle."""
    require_admin(actor)
    v = Validator()
    clean = _validate_zone(v, data, actor.circle_id, None, creating=True)
    v.raise_if_any()
    zone = Zone(circle_id=actor.circle_id, name=clean["name"], code=clean.get("code"),
                active=clean.get("active", True))
    db.session.add(zone)
    _save_zone(actor, zone, now, "zone.created", name=zone.name)
    return zone


def update_zone(actor: User, zone_id: int, data: Mapping[str, Any], now: datetime) -> Zone:
    """Rename, recode, activate or deactivate a zone of the actor's circle (admin only)."""
    require_admin(actor)
    zone = get_in_circle(Zone, zone_id, actor.circle_id, what="zone", lock=True)
    v = Validator()
    clean = _validate_zone(v, data, actor.circle_id, zone.id, creating=False)
    v.raise_if_any()
    changed = _apply(zone, clean)
    _save_zone(actor, zone, now, "zone.updated" if changed else None, fields=changed)
    return zone


# --- police contacts -------------------------------------------------------------------

_CONTACT_FIELDS = ("zone_id", "name", "phone", "email", "webhook_url", "protocol_reference",
                   "notes", "active")
_CHANNELS = ("phone", "email", "webhook_url")


def list_police_contacts(
    actor: User, zone_id: int | None = None, *, limit: int = DEFAULT_LIMIT, offset: int = 0
) -> dict[str, Any]:
    """A page of the circle's police contacts (optionally of one zone), circle-wide first,
    by name."""
    check_page(limit, offset)
    stmt = scoped(PoliceContact, actor.circle_id)
    if zone_id is not None:
        stmt = stmt.where(PoliceContact.zone_id == zone_id)
    stmt = stmt.order_by(PoliceContact.zone_id.is_not(None), PoliceContact.zone_id,
                         func.lower(PoliceContact.name), PoliceContact.id)
    return envelope(list(db.session.scalars(page_of(stmt, limit, offset))), limit, offset)


def police_contacts_for_zone(circle_id: int, zone_id: int | None) -> list[PoliceContact]:
    """The active contacts to alert for ``zone_id``: the zone's own, else the circle-wide ones."""
    if zone_id is not None:
        own = list(db.session.scalars(
            scoped(PoliceContact, circle_id)
            .where(PoliceContact.zone_id == zone_id, PoliceContact.active.is_(True))
            .order_by(PoliceContact.id)
        ))
        if own:
            return own
    return list(db.session.scalars(
        scoped(PoliceContact, circle_id)
        .where(PoliceContact.zone_id.is_(None), PoliceContact.active.is_(True))
        .order_by(PoliceContact.id)
    ))


def _valid_webhook(url: str) -> bool:
    """An absolute https URL (plain http only to this machine, for development)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        return False
    if not host or parts.username or parts.password or any(c.isspace() for c in url):
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _contact_email(raw: str) -> str:
    email = normalise_email(raw)
    if not valid_email(email):
        raise ValueError("Not a valid email address.")
    return email


def _webhook_url(raw: str) -> str:
    if len(raw) > 500 or not _valid_webhook(raw):
        raise ValueError("Must be an https URL (at most 500 characters).")
    return raw


def _validate_contact(v: Validator, data: Mapping[str, Any], contact: PoliceContact | None,
                      circle: Circle) -> dict[str, Any]:
    reject_unknown(v, data, _CONTACT_FIELDS)
    creating = contact is None
    clean: dict[str, Any] = {}
    if creating or "name" in data:
        clean["name"] = _text(v, data, "name", 120, required=True)
    if "zone_id" in data:
        zone_id = data["zone_id"]
        if zone_id is None:
            clean["zone_id"] = None
        elif (
            isinstance(zone_id, int)
            and not isinstance(zone_id, bool)
            and 1 <= zone_id <= MAX_ID
            and db.session.scalars(scoped(Zone, circle.id).where(Zone.id == zone_id)).first()
        ):
            clean["zone_id"] = zone_id
        else:
            v.add("zone_id", "No such zone in this circle.")
    parsers: dict[str, Callable[[str], str]] = {
        "phone": lambda raw: normalise_phone(raw, circle.country),
        "email": _contact_email,
        "webhook_url": _webhook_url,
    }
    for name, parse in parsers.items():
        if name not in data:
            continue
        raw = clean_text(data[name])
        try:
            clean[name] = None if raw is None else parse(raw)
        except ValueError as exc:
            v.add(name, str(exc))
    if "protocol_reference" in data:
        clean["protocol_reference"] = _text(v, data, "protocol_reference", 120)
    if "notes" in data:
        clean["notes"] = _text(v, data, "notes", 5000)
    if "active" in data and v.check(
        isinstance(data["active"], bool), "active", "Not a valid boolean."
    ):
        clean["active"] = data["active"]
    # At least one way to reach the contact must remain after the change.
    if not any(f in v.errors for f in _CHANNELS):
        merged = {f: clean[f] if f in clean else (getattr(contact, f) if contact else None)
                  for f in _CHANNELS}
        if not any(merged.values()):
            for f in _CHANNELS:
                v.add(f, "Give at least one of phone, email or webhook_url.")
    return clean


def create_police_contact(actor: User, data: Mapping[str, Any], now: datetime) -> PoliceContact:
    """A new police contact of the circle, for one zone or circle-wide (admin only)."""
    require_admin(actor)
    circle = get_circle(actor)
    v = Validator()
    clean = _validate_contact(v, data, None, circle)
    v.raise_if_any()
    contact = PoliceContact(circle_id=circle.id, active=True)
    _apply(contact, clean)
    db.session.add(contact)
    db.session.flush()
    record(circle.id, "circle", circle.id, "police_contact.created", now, actor.id,
           police_contact_id=contact.id)
    db.session.commit()
    return contact


def update_police_contact(actor: User, contact_id: int, data: Mapping[str, Any],
                          now: datetime) -> PoliceContact:
    """Change a police contact of the circle (admin only); one channel must remain."""
    require_admin(actor)
    circle = get_circle(actor)
    contact = get_in_circle(PoliceContact, contact_id, circle.id, what="police_contact", lock=True)
    v = Validator()
    clean = _validate_contact(v, data, contact, circle)
    v.raise_if_any()
    changed = _apply(contact, clean)
    if changed:
        record(circle.id, "circle", circle.id, "police_contact.updated", now, actor.id,
               police_contact_id=contact.id, fields=changed)
    db.session.commit()
    return contact


# Escalation policies stay importable from here.
__all__ = [
    "MAX_STEPS",
    "MAX_STEP_SECONDS",
    "PolicyView",
    "create_circle",
    "create_police_contact",
    "create_zone",
    "get_circle",
    "get_policy",
    "list_police_contacts",
    "list_policies",
    "list_zones",
    "police_contacts_for_zone",
    "policy_steps",
    "replace_policy",
    "update_circle",
    "update_police_contact",
    "update_zone",
]
