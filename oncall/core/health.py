"""Liveness and readiness endpoints for an outside monitor."""

from __future__ import annotations

import logging
from typing import Any

from apiflask import APIBlueprint
from flask import current_app
from sqlalchemy import text

from oncall.extensions import db

logger = logging.getLogger(__name__)

bp = APIBlueprint("health", __name__, tag="Health")


@bp.get("/health")
@bp.doc(summary="Liveness: the process answers")
def health() -> dict[str, Any]:
    return {"status": "ok"}


@bp.get("/health/ready")
@bp.doc(summary="Readiness: database, broker and scheduler", responses=[200, 503])
def ready() -> tuple[dict[str, Any], int]:
    settings = current_app.config["ONCALL"]
    checks: dict[str, Any] = {}
    ok = True
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "dialect": db.engine.dialect.name}
    except Exception as exc:  # any driver error means "not ready"
        logger.warning("readiness: database check failed: %s", type(exc).__name__)
        checks["database"] = {"ok": False, "error": type(exc).__name__}
        ok = False
    if settings.broker_url:
        checks["broker"] = _ping_broker(settings.broker_url)
        ok = ok and checks["broker"]["ok"]
    else:
        checks["broker"] = {"ok": True, "mode": "embedded"}
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
