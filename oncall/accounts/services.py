"""Accounts use cases: logging in, bearer tokens, users and the current user.

Each public function is one transaction: it validates everything first, then
writes and commits once. Nothing here reads the Flask request.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update

from config.settings import Settings
from oncall.accounts import ratelimit
from oncall.accounts.auth import hash_token, new_token
from oncall.accounts.checks import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    check_codes,
    clean_text,
    normalise_email,
    normalise_phone,
    reject_unknown,
    valid_email,
    validate_user,
)
from oncall.accounts.codes import hash_code
from oncall.accounts.models import ApiToken, User
from oncall.accounts.passwords import hash_password, verify_password
from oncall.circles.models import Circle
from oncall.core.checks import unique_or_422
from oncall.core.paging import DEFAULT_LIMIT, check_page, envelope, page_of
from oncall.core.tenancy import get_in_circle, scoped
from oncall.core.timeline import record
from oncall.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Validator,
)
from oncall.extensions import db
from oncall.visits.models import OPEN_STATES, Visit

logger = logging.getLogger(__name__)

#: Largest id of an INTEGER key; a larger id cannot exist.
MAX_ID = 2**31 - 1

#: An address may make this many times more login attempts than one email, so that
#: a practice behind one router is not locked out by one person's typing.
ADDRESS_LIMIT_FACTOR = 5

_USER_FIELDS = (
    "email",
    "name",
    "role",
    "language",
    "phone",
    "password",
    "vehicle_make",
    "vehicle_colour",
    "vehicle_plate",
)
_ME_FIELDS = (
    "name",
    "language",
    "phone",
    "password",
    "current_password",
    "vehicle_make",
    "vehicle_colour",
    "vehicle_plate",
)


def _settings() -> Settings:
    settings: Settings = current_app.config["ONCALL"]
    return settings


def _circle(circle_id: int, *, lock: bool = False) -> Circle:
    """The circle; with ``lock``, ``FOR NO KEY UPDATE``: it serialises the checks of the
    circle's users (last admin, a doctor's open visits) without blocking the inserts
    that merely reference the circle, so a transaction holding a user's row can always
    finish writing its rows."""
    stmt: Any = select(Circle).where(Circle.id == circle_id)
    if lock:
        stmt = stmt.with_for_update(key_share=True)
    circle: Circle = db.session.scalars(stmt).one()
    return circle


def require_admin(actor: User) -> None:
    """Refuse (403) anyone but an admin."""
    if actor.role != "admin":
        raise Forbidden("This needs the role admin.", code="role_forbidden")


# --- logging in and tokens -----------------------------------------------------------


def authenticate(email: str, password: str, client_ip: str | None, now: datetime) -> User:
    """The active user with these credentials; 429 past the rate limit, else 401.

    Every attempt counts against the email and against the client address. An
    unknown email, a wrong password and an inactive account answer the same
    ``invalid_credentials`` after the same password-hashing work.
    """
    settings = _settings()
    login = normalise_email(email or "")
    email_key = hashlib.sha256(login.encode()).hexdigest()[:32]
    limit = settings.login_rate_limit
    ratelimit.enforce(
        [
            (f"login:email:{email_key}", limit),
            (f"login:addr:{client_ip or 'unknown'}", limit * ADDRESS_LIMIT_FACTOR),
        ],
        settings.login_rate_window_seconds,
        now,
        message="Too many login attempts; try again later.",
    )
    user = db.session.scalars(select(User).where(User.email == login)).first() if login else None
    ok = verify_password(user.password_hash if user is not None else None, password or "")
    if not ok or user is None or not user.active:
        logger.info("login refused (user id %s)", user.id if user is not None else None)
        raise Unauthorized("Wrong email or password.", code="invalid_credentials")
    return user


def issue_token(
    user: User, label: str | None, now: datetime, ttl: timedelta | None = None
) -> tuple[str, ApiToken]:
    """A new bearer token for ``user`` (returned once) and its stored row; commits."""
    lifetime = ttl if ttl is not None else timedelta(days=_settings().token_ttl_days)
    token = new_token()
    row = ApiToken(
        circle_id=user.circle_id,
        user_id=user.id,
        token_hash=hash_token(token),
        prefix=token[:10],
        label=clean_text(label),
        created_at=now,
        expires_at=now + lifetime,
    )
    db.session.add(row)
    db.session.commit()
    logger.info("token %s issued to user %s", row.id, user.id)
    return token, row


def create_token(
    email: str, password: str, label: str | None, client_ip: str | None, now: datetime
) -> tuple[str, ApiToken]:
    """Log in with email and password and issue a bearer token (rate-limited)."""
    user = authenticate(email, password, client_ip, now)
    return issue_token(user, label, now)


def list_tokens(
    actor: User, user_id: int | None = None, *, limit: int = DEFAULT_LIMIT, offset: int = 0
) -> dict[str, Any]:
    """A page of the actor's tokens (an admin may ask for another user's of the circle),
    newest first."""
    check_page(limit, offset)
    owner_id = actor.id if user_id is None else user_id
    if owner_id != actor.id:
        require_admin(actor)
        get_in_circle(User, owner_id, actor.circle_id, what="user")
    stmt = (
        scoped(ApiToken, actor.circle_id)
        .where(ApiToken.user_id == owner_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    return envelope(list(db.session.scalars(page_of(stmt, limit, offset))), limit, offset)


def revoke_token(actor: User, token_id: int, now: datetime) -> ApiToken:
    """Revoke one token: the actor's own, or any of the circle for an admin; idempotent."""
    row = get_in_circle(ApiToken, token_id, actor.circle_id, what="token", lock=True)
    if row.user_id != actor.id and actor.role != "admin":
        raise NotFound(f"No token {token_id}.", code="token_not_found")
    if row.revoked_at is None:
        row.revoked_at = now
        record(actor.circle_id, "user", row.user_id, "token.revoked", now, actor.id,
               token_id=row.id)
    db.session.commit()
    return row


# --- users ---------------------------------------------------------------------------


def list_users(
    actor: User,
    role: str | None = None,
    active: bool | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of the users of the actor's circle, optionally by role and active flag, by name."""
    check_page(limit, offset)
    stmt = scoped(User, actor.circle_id)
    if role is not None:
        stmt = stmt.where(User.role == role)
    if active is not None:
        stmt = stmt.where(User.active.is_(active))
    stmt = stmt.order_by(func.lower(User.name), User.id)
    return envelope(list(db.session.scalars(page_of(stmt, limit, offset))), limit, offset)


def get_user(actor: User, user_id: int) -> User:
    """One user of the actor's circle, or 404."""
    return get_in_circle(User, user_id, actor.circle_id, what="user")


def _open_visit_count(doctor_id: int, circle_id: int) -> int:
    return int(
        db.session.scalar(
            select(func.count(Visit.id)).where(
                Visit.circle_id == circle_id,
                Visit.doctor_id == doctor_id,
                Visit.status.in_(OPEN_STATES),
            )
        )
        or 0
    )


def _other_active_admins(user: User) -> int:
    return int(
        db.session.scalar(
            select(func.count(User.id)).where(
                User.circle_id == user.circle_id,
                User.role == "admin",
                User.active.is_(True),
                User.id != user.id,
            )
        )
        or 0
    )


def _apply(user: User, clean: Mapping[str, Any]) -> list[str]:
    """Set the cleaned values on ``user``; return the names of the fields that changed."""
    changed = []
    for key, value in clean.items():
        if key == "password":
            user.password_hash = hash_password(value)
            changed.append("password")
        elif getattr(user, key) != value:
            setattr(user, key, value)
            changed.append(key)
    return sorted(changed)


_EMAIL_TAKEN = "This email is already used by another account."


def _commit_user() -> None:
    with unique_or_422("email", _EMAIL_TAKEN):
        db.session.commit()


def create_user(actor: User, data: Mapping[str, Any], now: datetime) -> User:
    """A new active user of the actor's circle (admin only); 422 naming every bad field."""
    require_admin(actor)
    circle = _circle(actor.circle_id)
    v = Validator()
    reject_unknown(v, data, _USER_FIELDS)
    clean = validate_user(v, data, circle.country, creating=True)
    v.raise_if_any()
    user = User(
        circle_id=actor.circle_id,
        email=clean["email"],
        name=clean["name"],
        role=clean["role"],
        language=clean.get("language", "fr"),
        phone=clean.get("phone"),
        password_hash=hash_password(clean["password"]),
        vehicle_make=clean.get("vehicle_make"),
        vehicle_colour=clean.get("vehicle_colour"),
        vehicle_plate=clean.get("vehicle_plate"),
        active=True,
        created_at=now,
    )
    db.session.add(user)
    with unique_or_422("email", _EMAIL_TAKEN):
        db.session.flush()
    record(actor.circle_id, "user", user.id, "user.created", now, actor.id, role=user.role)
    _commit_user()
    logger.info("user %s created in circle %s by %s", user.id, user.circle_id, actor.id)
    return user


def update_user(actor: User, user_id: int, data: Mapping[str, Any], now: datetime) -> User:
    """Change a user of the actor's circle (admin only).

    Refuses (409) to take the doctor role from someone with open visits and to
    leave the circle without an active admin. The user's row is locked
    (``FOR UPDATE``) before the visits are counted, so the check serialises with
    visit assignment, which locks the candidate doctors' rows.
    """
    require_admin(actor)
    circle = _circle(actor.circle_id, lock="role" in data)
    user = get_in_circle(User, user_id, actor.circle_id, what="user", lock=True)
    v = Validator()
    reject_unknown(v, data, _USER_FIELDS)
    clean = validate_user(v, data, circle.country, creating=False, user=user)
    v.raise_if_any()
    new_role = clean.get("role", user.role)
    if new_role != user.role:
        if user.role == "doctor" and _open_visit_count(user.id, user.circle_id):
            raise Conflict(
                "This doctor still has open visits; reassign them first.",
                code="doctor_has_open_visits",
            )
        if user.role == "admin" and user.active and not _other_active_admins(user):
            raise Conflict("The circle needs at least one active admin.", code="last_admin")
    changed = _apply(user, clean)
    if changed:
        record(actor.circle_id, "user", user.id, "user.updated", now, actor.id, fields=changed)
    _commit_user()
    return user


def deactivate_user(actor: User, user_id: int, now: datetime) -> User:
    """Deactivate a user and revoke all their tokens (admin only); idempotent.

    A doctor with open visits answers 409 ``doctor_has_open_visits`` so that no
    visit is left without a doctor silently; the last active admin answers 409.
    Locks the circle's row (``FOR NO KEY UPDATE``), then the user's (``FOR UPDATE``)
    before counting the open visits: a visit being assigned to this doctor in
    another transaction is waited for, then counted.
    """
    require_admin(actor)
    _circle(actor.circle_id, lock=True)
    user = get_in_circle(User, user_id, actor.circle_id, what="user", lock=True)
    if not user.active:
        db.session.commit()
        return user
    if user.role == "doctor" and _open_visit_count(user.id, user.circle_id):
        raise Conflict(
            "This doctor still has open visits; reassign them first.",
            code="doctor_has_open_visits",
        )
    if user.role == "admin" and not _other_active_admins(user):
        raise Conflict("The circle needs at least one active admin.", code="last_admin")
    user.active = False
    user.deactivated_at = now
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    record(actor.circle_id, "user", user.id, "user.deactivated", now, actor.id)
    db.session.commit()
    logger.info("user %s deactivated by %s", user.id, actor.id)
    return user


# --- the current user ----------------------------------------------------------------


def get_me(actor: User) -> User:
    """The acting user."""
    return actor


def update_me(actor: User, data: Mapping[str, Any], now: datetime) -> User:
    """Change one's own name, language, phone, vehicle or password.

    A new password needs ``current_password``; a wrong one is a 422 on that field.
    """
    circle = _circle(actor.circle_id)
    user = get_in_circle(User, actor.id, actor.circle_id, what="user", lock=True)
    v = Validator()
    reject_unknown(v, data, _ME_FIELDS)
    clean = validate_user(v, {k: data[k] for k in data if k != "current_password"},
                           circle.country, creating=False, user=user)
    if "password" in data:
        current = data.get("current_password")
        if not current:
            v.add("current_password", "Needed to change the password.")
        elif not verify_password(user.password_hash, str(current)):
            v.add("current_password", "This is not your current password.")
    v.raise_if_any()
    changed = _apply(user, clean)
    if changed:
        record(actor.circle_id, "user", user.id, "user.updated", now, actor.id, fields=changed)
    db.session.commit()
    return user


def set_codes(actor: User, data: Mapping[str, Any], now: datetime) -> User:
    """Set the doctor's own check-in code and duress code (doctors only).

    Both are given at once, 4 to 8 digits each, and different (422 naming the
    field). Only their argon2 hashes are kept; the timeline records the change,
    never the codes.
    """
    if actor.role != "doctor":
        raise Forbidden("This needs the role doctor.", code="role_forbidden")
    v = Validator()
    reject_unknown(v, data, ("checkin_code", "duress_code"))
    codes = check_codes(v, data)
    v.raise_if_any()
    assert codes is not None
    checkin, duress = codes
    user = get_in_circle(User, actor.id, actor.circle_id, what="user", lock=True)
    user.checkin_code_hash = hash_code(checkin)
    user.duress_code_hash = hash_code(duress)
    user.codes_set_at = now
    record(actor.circle_id, "user", user.id, "user.codes_set", now, actor.id)
    db.session.commit()
    logger.info("user %s set their codes", user.id)
    return user


# The field helpers of ``checks`` stay importable from here (the circles domain uses them).
__all__ = [
    "ADDRESS_LIMIT_FACTOR",
    "MAX_ID",
    "PASSWORD_MAX",
    "PASSWORD_MIN",
    "authenticate",
    "clean_text",
    "create_token",
    "create_user",
    "deactivate_user",
    "get_me",
    "get_user",
    "issue_token",
    "list_tokens",
    "list_users",
    "normalise_email",
    "normalise_phone",
    "reject_unknown",
    "require_admin",
    "revoke_token",
    "set_codes",
    "update_me",
    "update_user",
    "valid_email",
]
