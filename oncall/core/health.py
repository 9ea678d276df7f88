"""Liveness and readiness endpoints for an outside monitor.

``/health`` says the process answers. ``/health/ready`` says whether the service
can keep its promise that no deadline is lost; it answers 503 when

* the database does not answer;
* the broker does not answer (when one is configured);
* the scheduler is silent: no heartbeat for :data:`SCHEDULER_STALE_SECONDS`
  (read from Redis when a broker is configured, from the in-process sweeper in
  embedded mode; not checked when dispatch is off, in the test profile without
  a broker, where tests drive the engine by hand);
* an armed deadline is overdue by more than :data:`OVERDUE_DEADLINE_BOUND_SECONDS`
  (the sweep runs every one or two seconds, so this means nothing sweeps);
* an outbox message has waited past its attempt time for more than
  :data:`PENDING_OUTBOX_BOUND_SECONDS` (nothing relays; a receiver that is down
  does not count, its message waits for its next attempt time).

The scheduler process writes its heartbeat and its last audit to Redis under the
keys defined here, so a web process can report them without importing it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from apiflask import APIBlueprint
from flask import Flask, current_app
from sqlalchemy import text

from config.settings import Settings
from oncall.core.clock import utcnow
from oncall.extensions import db

logger = logging.getLogger(__name__)

bp = APIBlueprint("health", __name__, tag="Health")

#: Redis key holding the active scheduler's last heartbeat (ISO 8601, UTC).
HEARTBEAT_KEY = "oncall:scheduler:heartbeat"
#: Interval of the scheduler process's heartbeat, in seconds.
HEARTBEAT_INTERVAL_SECONDS = 10
#: The heartbeat key expires when beats stop for this long.
HEARTBEAT_TTL_SECONDS = 6 * HEARTBEAT_INTERVAL_SECONDS
#: Redis key holding the scheduler's last audit figures (JSON); expires like the heartbeat.
AUDIT_KEY = "oncall:scheduler:audit"
#: Key in ``app.extensions`` of the scheduler running in this process, if any.
SCHEDULER_EXTENSION_KEY = "oncall.scheduler"

#: Not ready when the scheduler's last heartbeat is older than this (three beats).
SCHEDULER_STALE_SECONDS = 3 * HEARTBEAT_INTERVAL_SECONDS
#: Not ready when an armed deadline is overdue by more than this.
OVERDUE_DEADLINE_BOUND_SECONDS = 30
#: Not ready when an outbox message waits past its attempt time by more than this.
PENDING_OUTBOX_BOUND_SECONDS = 120


def heartbeat_redis_url(settings: Settings) -> str:
    """The Redis URL where the heartbeat is kept ('' when there is no Redis)."""
    if settings.redis_url:
        return settings.redis_url
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return settings.broker_url
    return ""


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def last_heartbeat(settings: Settings) -> datetime | None:
    """When the active scheduler last ran its heartbeat (None: never, or too long ago)."""
    url = heartbeat_redis_url(settings)
    if not url:
        return None
    client = _redis(url)
    try:
        raw = client.get(HEARTBEAT_KEY)
    finally:
        client.close()
    if raw is None:
        return None
    value = raw.decode() if isinstance(raw, bytes) else str(raw)
    return datetime.fromisoformat(value).astimezone(UTC)


def last_audit(settings: Settings) -> dict[str, Any] | None:
    """The scheduler's last audit figures as it stored them (None: none recent)."""
    url = heartbeat_redis_url(settings)
    if not url:
        return None
    client = _redis(url)
    try:
        raw = client.get(AUDIT_KEY)
    finally:
        client.close()
    if raw is None:
        return None
    data = json.loads(raw)
    return data if isinstance(data, dict) else None


@bp.get("/health")
@bp.doc(summary="Liveness: the process answers")
def health() -> dict[str, Any]:
    return {"status": "ok"}


@bp.get("/health/ready")
@bp.doc(
    summary="Readiness: database, broker, scheduler, late deadlines and messages",
    responses=[200, 503],
)
def ready() -> tuple[dict[str, Any], int]:
    settings: Settings = current_app.config["ONCALL"]
    checks: dict[str, Any] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "dialect": db.engine.dialect.name}
    except Exception as exc:  # any driver error means "not ready"
        logger.warning("readiness: database check failed: %s", type(exc).__name__)
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    if settings.broker_url:
        checks["broker"] = _ping_broker(settings.broker_url)
    else:
        checks["broker"] = {"ok": True, "mode": "embedded"}
    checks["scheduler"] = _scheduler_check(current_app, settings)
    if checks["database"]["ok"]:
        checks.update(_lateness_checks())
    else:
        checks["deadlines"] = {"ok": False, "checked": False}
        checks["outbox"] = {"ok": False, "checked": False}
    ok = all(check["ok"] for check in checks.values())
    return {"status": "ok" if ok else "degraded", "checks": checks}, 200 if ok else 503


def _ping_broker(url: str) -> dict[str, Any]:
    if not url.startswith(("redis://", "rediss://")):
        return {"ok": True, "checked": False}
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        return {"ok": True}
    except redis.RedisError as exc:
        return {"ok": False, "error": type(exc).__name__}


def _scheduler_check(app: Flask, settings: Settings) -> dict[str, Any]:
    """How long ago the scheduler last showed it was alive.

    With a broker the scheduler is its own process and its heartbeat is read from
    Redis; in embedded mode it is the sweeper thread of this process.
    """
    now = utcnow()
    result: dict[str, Any] = {"bound_seconds": SCHEDULER_STALE_SECONDS}
    beat: datetime | None
    from oncall.core import dispatch

    if isinstance(app.extensions.get(dispatch.EXTENSION_KEY), dispatch.NullSender):
        # Dispatch is off (the test profile without a broker): the engine is driven by
        # hand and no scheduler is expected.
        return {**result, "ok": True, "mode": "off", "checked": False}
    if settings.broker_url:
        result["mode"] = "process"
        try:
            beat = last_heartbeat(settings)
            audit = last_audit(settings)
        except Exception as exc:  # Redis down or garbage in the key
            logger.warning("readiness: scheduler heartbeat unreadable: %s", type(exc).__name__)
            return {**result, "ok": False, "error": type(exc).__name__}
        if audit is not None:
            result["audit"] = audit
    else:
        result["mode"] = "embedded"
        state = app.extensions.get(SCHEDULER_EXTENSION_KEY)
        beat = getattr(state, "last_heartbeat", None)
        result["running"] = bool(getattr(state, "running", False))
        report = getattr(state, "last_audit", None)
        if report is not None and hasattr(report, "as_dict"):
            result["audit"] = report.as_dict()
    if beat is None:
        return {**result, "ok": False, "last_heartbeat": None, "age_seconds": None}
    age = max(0.0, (now - beat).total_seconds())
    return {
        **result,
        "ok": age <= SCHEDULER_STALE_SECONDS,
        "last_heartbeat": beat.isoformat(),
        "age_seconds": round(age, 3),
    }


def _lateness_checks() -> dict[str, Any]:
    """The oldest overdue deadline and the oldest message waiting to be relayed."""
    from oncall.alerts import deadlines
    from oncall.notify import outbox

    now = utcnow()
    try:
        overdue = deadlines.oldest_overdue(now)
        pending = outbox.oldest_pending(now)
    except Exception as exc:  # the tables may be missing before the first migration
        logger.warning("readiness: lateness check failed: %s", type(exc).__name__)
        db.session.rollback()
        return {
            "deadlines": {"ok": False, "error": type(exc).__name__},
            "outbox": {"ok": False, "error": type(exc).__name__},
        }
    return {
        "deadlines": {
            "ok": overdue is None or overdue <= OVERDUE_DEADLINE_BOUND_SECONDS,
            "oldest_overdue_deadline_seconds": None if overdue is None else round(overdue, 3),
            "bound_seconds": OVERDUE_DEADLINE_BOUND_SECONDS,
        },
        "outbox": {
            "ok": pending is None or pending <= PENDING_OUTBOX_BOUND_SECONDS,
            "oldest_pending_outbox_seconds": None if pending is None else round(pending, 3),
            "bound_seconds": PENDING_OUTBOX_BOUND_SECONDS,
        },
    }
