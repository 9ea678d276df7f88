"""Who is calling: bearer tokens, console sessions, CSRF and role checks.

Every API view is wrapped in :func:`require`, which authenticates the request,
refuses inactive users, enforces the roles and, for cookie sessions, the CSRF
token on unsafe methods. The acting user is then ``g.user``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request, session
from sqlalchemy import bindparam, select

from oncall.accounts.models import ROLES, ApiToken, User
from oncall.circles.models import Circle
from oncall.core.clock import utcnow
from oncall.errors import Forbidden, Unauthorized
from oncall.extensions import db

F = TypeVar("F", bound=Callable[..., Any])

TOKEN_PREFIX = "oc_"  # noqa: S105 - a prefix, not a secret
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
_LAST_USED_GRANULARITY = timedelta(minutes=5)
_ENVIRON_KEY = "oncall.user"
#: Built once; statement construction would otherwise cost more than the query.
_TOKEN_LOOKUP = (
    select(ApiToken, User, Circle)
    .join(User, User.id == ApiToken.user_id)
    .join(Circle, Circle.id == User.circle_id)
    .where(ApiToken.token_hash == bindparam("digest"))
)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh bearer token (shown once; only its digest is stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return cast(str, token)


def _user_from_bearer(header: str) -> User:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Use 'Authorization: Bearer <token>'.", code="bad_authorization_header")
    now = utcnow()
    # One round trip: the token, its user and the user's circle (which nearly every
    # use case reads next, then from the session's identity map).
    found = db.session.execute(_TOKEN_LOOKUP, {"digest": hash_token(token.strip())}).first()
    if found is None:
        raise Unauthorized("The token is unknown, expired or revoked.", code="invalid_token")
    row, user, circle = found
    # The session's identity map holds rows weakly: keeping the circle for the request
    # lets services read it from the map instead of the database.
    g.circle = circle
    if row.revoked_at is not None or row.expires_at <= now:
        raise Unauthorized("The token is unknown, expired or revoked.", code="invalid_token")
    if not user.active or user.circle_id != row.circle_id:
        raise Unauthorized("The token's user is not active.", code="invalid_token")
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_GRANULARITY:
        row.last_used_at = now
        db.session.commit()
    g.auth_method = "token"
    return user


def _user_from_session() -> User | None:
    uid = session.get("uid")
    if uid is None:
        return None
    user = db.session.get(User, uid)
    if user is None or not user.active or session.get("circle") != user.circle_id:
        session.clear()
        return None
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token") or ""
        expected = session.get("csrf") or ""
        if not expected or not hmac.compare_digest(sent, expected):
            raise Forbidden("Missing or wrong CSRF token.", code="csrf_failed")
    g.auth_method = "session"
    return user


def current_user() -> User:
    """The authenticated user of this request, or :class:`Unauthorized`."""
    # Cached on the request itself: an application context (and so ``g``) may
    # outlive one request, and a user must never carry over to the next.
    cached = request.environ.get(_ENVIRON_KEY)
    if cached is not None:
        return cast(User, cached)
    header = request.headers.get("Authorization")
    user = _user_from_bearer(header) if header else _user_from_session()
    if user is None:
        raise Unauthorized("Log in or send a bearer token.", code="authentication_required")
    request.environ[_ENVIRON_KEY] = user
    g.user = user
    return user


def require(*roles: str) -> Callable[[F], F]:
    """Authenticate the request and allow only ``roles`` (all roles when none given)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")
    allowed = frozenset(roles or ROLES)

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user.role not in allowed:
                raise Forbidden(
                    f"This needs the role {' or '.join(sorted(allowed))}.", code="role_forbidden"
                )
            return view(*args, **kwargs)

        spec = dict(getattr(wrapper, "_spec", {}) or {})
        spec["security"] = [{"BearerAuth": []}, {"SessionCookie": []}]
        spec["extensions"] = {**(spec.get("extensions") or {}), "x-roles": sorted(allowed)}
        wrapper._spec = spec  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorator


def login_session(user: User) -> None:
    """Start a console session for ``user`` (a new session id against fixation)."""
    session.clear()
    session["uid"] = user.id
    session["circle"] = user.circle_id
    session["csrf"] = secrets.token_urlsafe(32)
    session.permanent = True
