"""Helpers of the call-log tests: signed telephony requests, row counts, visits."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import current_app
from flask.testing import FlaskClient
from sqlalchemy import func, select

from oncall.calls.models import Call, Caller, TelephonyEvent
from oncall.calls.telephony import signed_headers
from oncall.core.clock import utcnow
from oncall.core.timeline import AccessLogEntry, TimelineEvent
from oncall.extensions import db
from oncall.visits.models import Visit

EVENTS_URL = "/api/v1/telephony/events"
TABLES = (Call, Caller, TelephonyEvent, TimelineEvent, AccessLogEntry, Visit)


def secret_key() -> str:
    return current_app.config["ONCALL"].secret_key


def post_event(
    client: FlaskClient,
    circle: Any,
    payload: dict[str, Any],
    *,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST ``payload`` signed for ``circle`` (override any header with ``headers``)."""
    body = json.dumps(payload).encode()
    ts = int(utcnow().timestamp()) if timestamp is None else timestamp
    sent = signed_headers(circle, secret_key(), body, ts)
    sent.update(headers or {})
    sent["Content-Type"] = "application/json"
    return client.post(EVENTS_URL, data=body, headers=sent)


def counts() -> dict[str, int]:
    """Rows per table of the call log (and what it writes alongside)."""
    db.session.expire_all()
    return {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
        for model in TABLES
    }


def make_visit(call: Call, zone: Any, *, status: str = "assigned", **kw: Any) -> Visit:
    now: datetime = kw.pop("created_at", utcnow())
    visit = Visit(
        circle_id=call.circle_id,
        call_id=call.id,
        zone_id=zone.id,
        status=status,
        created_at=now,
        updated_at=now,
        **kw,
    )
    visit.copy_patient_from(call)
    db.session.add(visit)
    db.session.commit()
    return visit
