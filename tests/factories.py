"""Factories for test data: real rows through the ORM, committed."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from oncall.accounts.auth import hash_token, new_token
from oncall.accounts.models import ApiToken, User
from oncall.accounts.passwords import hash_password
from oncall.circles.models import Circle, PoliceContact, Zone
from oncall.core.clock import utcnow
from oncall.extensions import db
from oncall.rota.models import Shift

PASSWORD = "correct horse battery staple"
_PASSWORD_HASH: str | None = None
_seq = itertools.count(1)


def _password_hash() -> str:
    global _PASSWORD_HASH
    if _PASSWORD_HASH is None:
        _PASSWORD_HASH = hash_password(PASSWORD)
    return _PASSWORD_HASH


def make_circle(name: str | None = None, **kw: Any) -> Circle:
    circle = Circle(
        name=name or f"Circle {next(_seq)}",
        timezone=kw.pop("timezone", "Europe/Brussels"),
        country=kw.pop("country", "BE"),
        created_at=utcnow(),
        **kw,
    )
    db.session.add(circle)
    db.session.commit()
    return circle


def make_zone(circle: Circle, name: str | None = None, **kw: Any) -> Zone:
    zone = Zone(circle_id=circle.id, name=name or f"Zone {next(_seq)}", **kw)
    db.session.add(zone)
    db.session.commit()
    return zone


def make_user(circle: Circle, role: str = "dispatcher", **kw: Any) -> User:
    n = next(_seq)
    user = User(
        circle_id=circle.id,
        email=kw.pop("email", f"{role}{n}@example.test"),
        name=kw.pop("name", f"{role.title()} {n}"),
        role=role,
        language=kw.pop("language", "fr"),
        password_hash=kw.pop("password_hash", None) or _password_hash(),
        created_at=utcnow(),
        **kw,
    )
    db.session.add(user)
    db.session.commit()
    return user


def token_for(user: User, *, ttl: timedelta = timedelta(days=1)) -> str:
    token = new_token()
    db.session.add(
        ApiToken(
            circle_id=user.circle_id,
            user_id=user.id,
            token_hash=hash_token(token),
            prefix=token[:10],
            label="test",
            created_at=utcnow(),
            expires_at=utcnow() + ttl,
        )
    )
    db.session.commit()
    return token


def auth(user: User) -> dict[str, str]:
    """Headers that authenticate as ``user`` with a fresh bearer token."""
    return {"Authorization": f"Bearer {token_for(user)}"}


def make_shift(
    zone: Zone, doctor: User, starts_at: datetime, ends_at: datetime, **kw: Any
) -> Shift:
    shift = Shift(
        circle_id=zone.circle_id,
        zone_id=zone.id,
        doctor_id=doctor.id,
        starts_at=starts_at,
        ends_at=ends_at,
        **kw,
    )
    db.session.add(shift)
    db.session.commit()
    return shift


def make_police_contact(circle: Circle, zone: Zone | None = None, **kw: Any) -> PoliceContact:
    contact = PoliceContact(
        circle_id=circle.id,
        zone_id=zone.id if zone else None,
        name=kw.pop("name", "Police zone contact"),
        phone=kw.pop("phone", "+3225000000"),
        **kw,
    )
    db.session.add(contact)
    db.session.commit()
    return contact
