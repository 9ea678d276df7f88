"""The consoles' live stream: an event row per change, and a nudge to listeners.

Events are rows (:class:`~oncall.notify.models.StreamEvent`), written in the
transaction of the change, so a console that reconnects with ``Last-Event-ID``
reloads exactly what it missed. After the commit a Redis message on
``oncall:stream:<circle id>`` nudges connected streams to read the new rows;
pub/sub is at-most-once, which is fine for a nudge.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from oncall.core import dispatch, ids
from oncall.core.timeline import jsonable
from oncall.extensions import db
from oncall.notify.models import StreamEvent

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "oncall:stream:"
_NUDGES = "oncall.stream.nudges"


def channel_name(circle_id: int) -> str:
    """The Redis pub/sub channel of a circle's stream."""
    return f"{CHANNEL_PREFIX}{circle_id}"


def publish(
    circle_id: int, kind: str, subject_type: str, subject_id: int, now: datetime, **data: Any
) -> StreamEvent | None:
    """Add a stream event to the current transaction; nudge listeners after commit.

    Returns the row, or None inside an engine pass (written in bulk then)."""
    values = {
        "circle_id": circle_id,
        "at": now,
        "kind": kind,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "data": jsonable(data),
    }
    row: StreamEvent | None = None
    if ids.queue_row(StreamEvent, values) is None:
        row = StreamEvent(**values)
        db.session.add(row)
    pending: set[int] = db.session.info.setdefault(_NUDGES, set())
    if circle_id not in pending:
        pending.add(circle_id)
        dispatch.on_commit(lambda: _after_commit(circle_id))
    return row


def _after_commit(circle_id: int) -> None:
    db.session.info.get(_NUDGES, set()).discard(circle_id)
    _nudge(circle_id)


def _forget(session: Session, previous: Any) -> None:
    """Forget what a rolled-back transaction asked for (savepoints aside)."""
    if getattr(previous, "nested", False):
        return
    session.info.pop(_NUDGES, None)


event.listen(Session, "after_soft_rollback", _forget)


def _nudge(circle_id: int) -> None:
    url = current_app.config["ONCALL"].redis_url
    if not url:
        return
    client = current_app.extensions.get("oncall.stream.redis")
    if client is None:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        current_app.extensions["oncall.stream.redis"] = client
    client.publish(channel_name(circle_id), "1")
