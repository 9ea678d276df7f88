"""The telephone system's webhook signature.

Each circle has its own signing secret, derived from the service's secret key and
the circle's ``telephony_key_version`` (bump the version to rotate it); it is
never stored. A request carries three headers::

    X-Oncall-Circle: <circle id>
    X-Oncall-Timestamp: <unix seconds>
    X-Oncall-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

A timestamp further than ``telephony_max_skew_seconds`` from now is refused, so a
captured request cannot be replayed later; within the window a replay is a
duplicate event, which changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, Protocol, TypeVar, cast

from flask import current_app, g, request

from oncall.circles.models import Circle
from oncall.core.clock import utcnow
from oncall.errors import Unauthorized
from oncall.extensions import db

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

CIRCLE_HEADER = "X-Oncall-Circle"
TIMESTAMP_HEADER = "X-Oncall-Timestamp"
SIGNATURE_HEADER = "X-Oncall-Signature"
SIGNATURE_PREFIX = "sha256="

_BAD_SIGNATURE = "Missing or wrong telephony signature."
_MAX_ID = 2**31 - 1


class _HasTelephonyKey(Protocol):
    id: int
    telephony_key_version: int


def circle_secret(circle: _HasTelephonyKey, secret_key: str) -> str:
    """The circle's signing secret (hex); the same inputs always give the same secret."""
    message = f"telephony:{circle.id}:{circle.telephony_key_version}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``X-Oncall-Signature`` header value (``sha256=<hex>``) for ``body`` at ``timestamp``."""
    raw = body.encode() if isinstance(body, str) else body
    message = f"{timestamp}.".encode() + raw
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signed_headers(
    circle: _HasTelephonyKey, secret_key: str, body: bytes | str, timestamp: int
) -> dict[str, str]:
    """The three headers that authenticate ``body`` for ``circle`` (tests and clients use it)."""
    secret = circle_secret(circle, secret_key)
    return {
        CIRCLE_HEADER: str(circle.id),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def _refuse(message: str = _BAD_SIGNATURE) -> Unauthorized:
    return Unauthorized(message, code="bad_signature")


def verify(
    circle_header: str | None,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    secret_key: str,
    now: datetime,
    max_skew_seconds: int,
) -> Circle:
    """The circle that signed ``body``, or :class:`Unauthorized` (``bad_signature``).

    An unknown circle answers exactly like a wrong signature, so that the answer
    does not tell which circles exist.
    """
    if not circle_header or not timestamp_header or not signature_header:
        raise _refuse()
    try:
        timestamp = int(timestamp_header.strip())
    except ValueError:
        raise _refuse() from None
    if abs(now.timestamp() - timestamp) > max_skew_seconds:
        raise _refuse("The telephony timestamp is outside the allowed window.")
    signature = signature_header.strip()
    if not signature.startswith(SIGNATURE_PREFIX):
        raise _refuse()
    circle: Circle | None = None
    text = circle_header.strip()
    if text.isascii() and text.isdigit() and 0 < int(text) <= _MAX_ID:
        circle = db.session.get(Circle, int(text))
    # Compute a digest even for an unknown circle so both paths take the same time.
    secret = (
        circle_secret(circle, secret_key)
        if circle
        else hmac.new(secret_key.encode(), b"telephony:unknown", hashlib.sha256).hexdigest()
    )
    expected = sign(secret, timestamp_header.strip(), body)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise _refuse()
    if circle is None:  # pragma: no cover - an unknown circle cannot produce a match
        raise _refuse()
    return circle


def telephony_signed(view: F) -> F:
    """Authenticate the request as the telephone system of a circle; sets ``g.telephony_circle``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = current_app.config["ONCALL"]
        try:
            circle = verify(
                request.headers.get(CIRCLE_HEADER),
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                request.get_data(cache=True),
                secret_key=settings.secret_key,
                now=utcnow(),
                max_skew_seconds=settings.telephony_max_skew_seconds,
            )
        except Unauthorized:
            logger.warning("telephony: refused a request with a bad or missing signature")
            raise
        g.telephony_circle = circle
        return view(*args, **kwargs)

    spec = dict(getattr(wrapper, "_spec", {}) or {})
    spec["extensions"] = {**(spec.get("extensions") or {}), "x-auth": "telephony-hmac"}
    wrapper._spec = spec  # type: ignore[attr-defined]
    return cast(F, wrapper)


def current_circle() -> Circle:
    """The circle authenticated by :func:`telephony_signed` for this request."""
    return cast(Circle, g.telephony_circle)
