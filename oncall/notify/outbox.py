"""The outbox: messages written with the decision, delivered by a relay with retries.

:func:`add` puts a message in the current transaction (the caller commits, and
:mod:`oncall.core.dispatch` hands the id to a worker after the commit).
:func:`deliver` sends given rows, :func:`relay` sends every row that is due; both
claim rows with ``FOR UPDATE SKIP LOCKED`` and keep the lock while the message is
on the wire, so two workers never send the same row at once, and a row that was
sent is marked delivered in the same transaction that held it. A worker killed
between the send and the commit leaves the row pending: it is sent again with
the same idempotency key (the row id), which the receiver uses to drop the copy.

Backoff after a failed attempt: 1, 2, 4, 8 seconds, then every
``outbox_max_backoff_seconds`` until ``outbox_give_up_seconds`` have passed since
the row was written; a permanent failure (a refused address) stops at once.
Every attempt is a :class:`~oncall.notify.models.DeliveryAttempt` row, and the
listeners in :data:`ATTEMPT_LISTENERS` are told (the alert's timeline uses it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from config.settings import Settings
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.core.ids import queue_row
from oncall.extensions import db
from oncall.notify.channels.base import Channel, DeliveryFailed, Outgoing
from oncall.notify.models import DeliveryAttempt, OutboxMessage

logger = logging.getLogger(__name__)

#: Rows one relay transaction claims.
RELAY_BATCH = 100
#: Messages on the wire at once from one process.
SEND_CONCURRENCY = 16

#: Called with (row, attempt) after every attempt, inside the relay's transaction.
ATTEMPT_LISTENERS: list[Callable[[OutboxMessage, DeliveryAttempt], None]] = []

_pool: ThreadPoolExecutor | None = None
_NEW_ROWS = "oncall.outbox.new"


@dataclass
class RelayResult:
    """What one relay pass did."""

    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def __iadd__(self, other: RelayResult) -> RelayResult:
        self.delivered += other.delivered
        self.retrying += other.retrying
        self.failed += other.failed
        return self


def add(
    *,
    circle_id: int,
    purpose: str,
    recipient_type: str,
    recipient_id: int,
    channel: str,
    address: str,
    subject: str,
    body: str,
    payload: dict[str, Any],
    now: datetime,
    alert_id: int | None = None,
    deadline_id: int | None = None,
    claim_id: int | None = None,
    channel_id: int | None = None,
    stop_on: str | None = None,
) -> OutboxMessage | None:
    """Write one message to the outbox in the current transaction; sent after commit.

    Returns the row; inside an engine pass, None: the row is queued for a bulk
    insert (see :func:`oncall.core.ids.queue_row`). :func:`take_new` gives the
    ids either way."""
    values: dict[str, Any] = {
        "circle_id": circle_id,
        "purpose": purpose,
        "alert_id": alert_id,
        "deadline_id": deadline_id,
        "claim_id": claim_id,
        "stop_on": stop_on,
        "recipient_type": recipient_type,
        "recipient_id": recipient_id,
        "channel_id": channel_id,
        "channel": channel,
        "address": address,
        "subject": subject[:200],
        "body": body,
        "payload": payload,
        "state": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }
    new: list[OutboxMessage | int] = db.session.info.setdefault(_NEW_ROWS, [])
    queued = queue_row(OutboxMessage, values)
    if queued is not None:
        new.append(queued)
        return None
    row = OutboxMessage(**values)
    db.session.add(row)
    new.append(row)
    return row


def take_new() -> list[int]:
    """Ids of the rows :func:`add` wrote in the current transaction (flushed now)."""
    rows: list[OutboxMessage | int] = db.session.info.pop(_NEW_ROWS, [])
    if any(not isinstance(row, int) for row in rows):
        db.session.flush()
    return [row if isinstance(row, int) else row.id for row in rows]


def hand_off_new() -> list[int]:
    """Have a worker deliver this transaction's new rows once it commits; their ids."""
    ids = take_new()
    hand_off(ids)
    return ids


def _forget_new(session: Session, previous: Any) -> None:
    """Forget what a rolled-back transaction asked for (savepoints aside)."""
    if getattr(previous, "nested", False):
        return
    session.info.pop(_NEW_ROWS, None)


event.listen(Session, "after_soft_rollback", _forget_new)


def cancel_for_alert(alert_id: int, stop_on: Sequence[str], now: datetime) -> int:
    """Cancel the alert's undelivered messages whose need ended (``stop_on`` reached).

    A coordinator's repeat that is still being retried when someone acknowledges
    is not sent any more. Returns how many rows were cancelled.
    """
    result = db.session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.alert_id == alert_id,
            OutboxMessage.state == "pending",
            OutboxMessage.stop_on.in_(list(stop_on)),
        )
        .values(state="cancelled", cancelled_at=now, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def backoff(attempts: int, settings: Settings) -> timedelta:
    """Wait before attempt ``attempts + 1``: 1, 2, 4, 8 s..., capped."""
    seconds = min(2 ** max(0, attempts - 1), settings.outbox_max_backoff_seconds)
    return timedelta(seconds=seconds)


def _channels() -> dict[str, Channel]:
    from oncall.notify.channels.registry import build_channels

    key = "oncall.channels"
    channels: dict[str, Channel] | None = current_app.extensions.get(key)
    if channels is None:
        channels = build_channels(current_app.config["ONCALL"])
        current_app.extensions[key] = channels
    return channels


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(SEND_CONCURRENCY, thread_name_prefix="oncall-send")
    return _pool


def _send_one(channel: Channel | None, message: Outgoing) -> tuple[bool, str, bool]:
    """(ok, receipt or error, permanent) for one message; never raises."""
    if channel is None:
        return False, f"channel {message.channel} is not configured", False
    try:
        return True, channel.send(message)[:300], False
    except DeliveryFailed as exc:
        return False, exc.detail, exc.permanent
    except Exception as exc:  # a channel bug must not lose the row: retry it
        return False, f"{type(exc).__name__}", False


def _claim(stmt: Any) -> list[OutboxMessage]:
    if db.engine.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(db.session.scalars(stmt.execution_options(populate_existing=True)))


def _send_rows(rows: list[OutboxMessage], now: datetime) -> RelayResult:
    """Send the claimed rows concurrently, record every attempt, commit."""
    settings: Settings = current_app.config["ONCALL"]
    channels = _channels()
    outgoing = [
        Outgoing(
            message_id=row.id,
            circle_id=row.circle_id,
            channel=row.channel,
            address=row.address,
            subject=row.subject,
            body=row.body,
            payload=dict(row.payload or {}),
            attempt=row.attempts + 1,
        )
        for row in rows
    ]
    started = utcnow()
    if len(outgoing) == 1:
        outcomes = [_send_one(channels.get(outgoing[0].channel), outgoing[0])]
    else:
        outcomes = list(
            _executor().map(lambda m: _send_one(channels.get(m.channel), m), outgoing)
        )
    finished = utcnow()
    result = RelayResult()
    for row, (ok, detail, permanent) in zip(rows, outcomes, strict=True):
        row.attempts += 1
        attempt = DeliveryAttempt(
            circle_id=row.circle_id,
            outbox_id=row.id,
            attempt=row.attempts,
            started_at=started,
            finished_at=finished,
            ok=ok,
            detail=detail,
        )
        db.session.add(attempt)
        if ok:
            row.state = "delivered"
            row.delivered_at = finished
            row.receipt = detail
            row.next_attempt_at = None
            result.delivered.append(row.id)
        elif permanent or finished - row.created_at >= timedelta(
            seconds=settings.outbox_give_up_seconds
        ):
            row.state = "failed"
            row.last_error = detail
            row.next_attempt_at = None
            result.failed.append(row.id)
            logger.error(
                "outbox %s (%s to %s %s) failed for good after %s attempts",
                row.id, row.channel, row.recipient_type, row.recipient_id, row.attempts,
            )
        else:
            row.last_error = detail
            row.next_attempt_at = finished + backoff(row.attempts, settings)
            result.retrying.append(row.id)
            dispatch.wake_at(row.next_attempt_at)
        for listener in ATTEMPT_LISTENERS:
            listener(row, attempt)
    db.session.commit()
    if result.retrying:
        logger.warning("outbox: %s message(s) will be retried", len(result.retrying))
    return result


def deliver(ids: Iterable[int], now: datetime | None = None) -> RelayResult:
    """Send the given rows if they are still pending and due (a stale call does nothing)."""
    now = now or utcnow()
    wanted = sorted(set(ids))
    result = RelayResult()
    for start in range(0, len(wanted), RELAY_BATCH):
        chunk = wanted[start : start + RELAY_BATCH]
        rows = _claim(
            select(OutboxMessage)
            .where(
                OutboxMessage.id.in_(chunk),
                OutboxMessage.state == "pending",
                OutboxMessage.next_attempt_at <= now,
            )
            .order_by(OutboxMessage.id)
        )
        if not rows:
            db.session.commit()
            continue
        result += _send_rows(rows, now)
    return result


def relay(now: datetime | None = None, *, max_batches: int = 50) -> RelayResult:
    """Send every pending row that is due, oldest first, in batches (the sweep's half)."""
    result = RelayResult()
    for _ in range(max_batches):
        current = now or utcnow()
        rows = _claim(
            select(OutboxMessage)
            .where(OutboxMessage.state == "pending", OutboxMessage.next_attempt_at <= current)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(RELAY_BATCH)
        )
        if not rows:
            db.session.commit()
            break
        result += _send_rows(rows, current)
        if len(rows) < RELAY_BATCH:
            break
    return result


def oldest_pending(now: datetime) -> float | None:
    """Seconds the most overdue pending row has waited past its attempt time (None: none)."""
    oldest = db.session.scalar(
        select(OutboxMessage.next_attempt_at)
        .where(OutboxMessage.state == "pending", OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at)
        .limit(1)
    )
    return None if oldest is None else (now - oldest).total_seconds()


def hand_off(ids: Sequence[int]) -> None:
    """After commit, have a worker deliver ``ids`` (fast path; the sweep is the guarantee)."""
    for start in range(0, len(ids), RELAY_BATCH):
        dispatch.after_commit(dispatch.DELIVER, list(ids[start : start + RELAY_BATCH]))
