"""Signatures on outgoing webhooks, so a receiver can trust what it is sent.

Each circle has its own webhook secret, derived from the service's secret key and
the circle's id; it is never stored, and the coordinator gives it to whoever runs
the receiving end. Every webhook carries::

    X-Oncall-Timestamp: <unix seconds>
    X-Oncall-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
    Idempotency-Key: <message id>
    X-Oncall-Message-Id: <message id>
    X-Oncall-Attempt: <1 for the first attempt>

A receiver checks the signature with :func:`verify` and refuses stale timestamps,
so a captured request cannot be replayed later. The same message may arrive more
than once (a retry after a lost answer); the ``Idempotency-Key`` is what lets the
receiver act on it once.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

TIMESTAMP_HEADER = "X-Oncall-Timestamp"
SIGNATURE_HEADER = "X-Oncall-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MESSAGE_ID_HEADER = "X-Oncall-Message-Id"
ATTEMPT_HEADER = "X-Oncall-Attempt"
SIGNATURE_PREFIX = "sha256="

#: How far a signed timestamp may be from the receiver's clock, in seconds.
DEFAULT_MAX_SKEW = 300


def webhook_secret(secret_key: str, circle_id: int) -> str:
    """The circle's webhook signing secret (hex); the same inputs always give the same secret."""
    message = f"webhook:{circle_id}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``X-Oncall-Signature`` value (``sha256=<hex>``) for ``body`` sent at ``timestamp``."""
    raw = body.encode() if isinstance(body, str) else body
    message = f"{timestamp}.".encode() + raw
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: int | str | None,
    body: bytes | str,
    signature: str | None,
    *,
    now: datetime | float,
    max_skew: float = DEFAULT_MAX_SKEW,
) -> bool:
    """True when ``signature`` signs ``body`` at ``timestamp`` and the timestamp is fresh.

    ``now`` is the receiver's clock (an aware datetime or unix seconds). The
    comparison runs in constant time so that a forger learns nothing from timing.
    """
    if timestamp is None or not signature:
        return False
    stamp = str(timestamp).strip()
    try:
        sent_at = int(stamp)
    except ValueError:
        return False
    current = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(current - sent_at) > max_skew:
        return False
    expected = sign(secret, stamp, body)
    return hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace"))
