"""What the scheduler does each time it wakes: sweep, look ahead, audit.

These functions run inside an application context and are shared by the
scheduler process (:mod:`workers.scheduler`) and the embedded sweeper of
``oncall serve``. They call the same engine and outbox functions as the Celery
tasks: the scheduler is the guarantee, the tasks are the fast path.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from config.celery import MAX_COUNTDOWN_SECONDS
from oncall.alerts import deadlines, engine
from oncall.alerts.models import Alert, Deadline
from oncall.core.clock import utcnow
from oncall.core.dispatch import BUCKET_MS, Sender
from oncall.extensions import db
from oncall.notify import outbox
from oncall.notify.models import OutboxMessage

logger = logging.getLogger(__name__)

#: Engine transactions one sweep runs at most before it lets the next sweep go on.
MAX_BATCHES = 50
#: Wake-up times the horizon job reads per kind of row, at most.
HORIZON_LIMIT = 5000
#: An outbox row pending this long past its attempt time is reported late.
OUTBOX_LATE_SECONDS = 60
#: Ids named in one audit warning, at most.
AUDIT_IDS = 20


@dataclass
class SweepResult:
    """What one sweep did: the engine's batches, then one relay pass."""

    batches: int = 0
    missed: int = 0
    reminded: int = 0
    steps_fired: int = 0
    messages_written: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def busy(self) -> bool:
        """True when the sweep moved or sent anything."""
        return bool(self.missed or self.reminded or self.steps_fired or self.delivered
                    or self.retrying or self.failed)


def run_engine(batch_size: int, result: SweepResult | None = None) -> SweepResult:
    """Run :func:`engine.process_due` at the current instant until nothing more is due.

    Each batch is its own transaction; a batch that hit the limit is followed
    by another, at most :data:`MAX_BATCHES` times.
    """
    result = result or SweepResult()
    for _ in range(MAX_BATCHES):
        done = engine.process_due(utcnow(), limit=batch_size)
        result.batches += 1
        result.missed += done.missed
        result.reminded += done.reminded
        result.steps_fired += done.steps_fired
        result.messages_written += len(done.outbox_ids)
        if not done.full:
            break
    return result


def relay(result: SweepResult | None = None) -> SweepResult:
    """Send every outbox message that is due, from this process."""
    result = result or SweepResult()
    relayed = outbox.relay()
    result.delivered += len(relayed.delivered)
    result.retrying += len(relayed.retrying)
    result.failed += len(relayed.failed)
    return result


def sweep(batch_size: int) -> SweepResult:
    """Move everything that is due, then send every message that is due.

    The relay sends in this process: when the broker or every worker is gone,
    the scheduler still delivers on its own.
    """
    result = relay(run_engine(batch_size))
    if result.busy:
        logger.info(
            "sweep: %s missed, %s reminded, %s steps fired, %s delivered, %s to retry, "
            "%s failed",
            result.missed, result.reminded, result.steps_fired, result.delivered,
            result.retrying, result.failed,
        )
    return result


def upcoming_times(now: datetime, within_seconds: float = MAX_COUNTDOWN_SECONDS) -> list[datetime]:
    """Every distinct instant in ``(now, now + within_seconds]`` when something falls due.

    Armed deadlines and their reminders, the next steps of open alerts, and the
    next attempts of pending messages.
    """
    until = now + timedelta(seconds=within_seconds)
    queries = (
        select(Deadline.due_at).where(
            Deadline.state == "armed", Deadline.due_at > now, Deadline.due_at <= until
        ),
        select(Deadline.remind_at).where(
            Deadline.state == "armed", Deadline.remind_at > now, Deadline.remind_at <= until
        ),
        select(Alert.next_step_at).where(
            Alert.status != "resolved", Alert.next_step_at > now, Alert.next_step_at <= until
        ),
        select(OutboxMessage.next_attempt_at).where(
            OutboxMessage.state == "pending",
            OutboxMessage.next_attempt_at > now,
            OutboxMessage.next_attempt_at <= until,
        ),
    )
    times: set[datetime] = set()
    for query in queries:
        column = query.selected_columns[0]
        times.update(
            t for t in db.session.scalars(query.distinct().order_by(column).limit(HORIZON_LIMIT))
            if t is not None
        )
    db.session.commit()
    return sorted(times)


def horizon(sender: Sender, now: datetime,
            within_seconds: float = MAX_COUNTDOWN_SECONDS,
            times: list[datetime] | None = None) -> list[datetime]:
    """Ask ``sender`` to wake the engine at every instant something falls due soon.

    A deadline armed hours ahead was too far for a countdown when it was armed,
    and a Redis that restarted empty forgot the countdowns it held: this puts
    them back. The sender drops the times it already has a task for. Stops at
    the first failure (the broker is down; the sweep covers for it). Returns
    the times handed over.
    """
    if times is None:
        times = upcoming_times(now, within_seconds)
    sent: list[datetime] = []
    buckets: set[int] = set()
    for when in times:
        # Times in one 100 ms bucket share one task (see oncall.core.dispatch).
        bucket = math.ceil(when.timestamp() * 1000 / BUCKET_MS)
        if bucket in buckets:
            sent.append(when)
            continue
        buckets.add(bucket)
        try:
            sender.wake_at(when)
        except Exception as exc:  # broker down: the sweep is the guarantee
            logger.warning("horizon: could not hand wake-ups to the broker (%s); %s left to "
                           "the sweep", type(exc).__name__, len(times) - len(sent))
            break
        sent.append(when)
    if sent:
        logger.debug("horizon: %s wake-up(s) handed over", len(sent))
    return sent


@dataclass
class AuditReport:
    """Rows the auditor found late, and the lateness figures the health check shows."""

    at: datetime
    late_deadline_ids: list[int] = field(default_factory=list)
    late_alert_ids: list[int] = field(default_factory=list)
    late_outbox_ids: list[int] = field(default_factory=list)
    oldest_overdue_deadline_seconds: float | None = None
    oldest_pending_outbox_seconds: float | None = None

    @property
    def clean(self) -> bool:
        return not (self.late_deadline_ids or self.late_alert_ids or self.late_outbox_ids)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


def audit(now: datetime, sweep_seconds: float) -> AuditReport:
    """Find what the engine or the relay should have handled and did not.

    A deadline or an alert step overdue by more than two sweep intervals means
    no sweep is running, or one fails; a message pending more than
    :data:`OUTBOX_LATE_SECONDS` past its attempt time means nothing relays.
    Each finding is logged as a warning, with ids only.
    """
    late_before = now - timedelta(seconds=2 * sweep_seconds)
    report = AuditReport(at=now)
    report.late_deadline_ids = list(db.session.scalars(
        select(Deadline.id)
        .where(Deadline.state == "armed", Deadline.due_at < late_before)
        .order_by(Deadline.due_at).limit(AUDIT_IDS)
    ))
    report.late_alert_ids = list(db.session.scalars(
        select(Alert.id)
        .where(Alert.status != "resolved", Alert.next_step_at < late_before)
        .order_by(Alert.next_step_at).limit(AUDIT_IDS)
    ))
    report.late_outbox_ids = list(db.session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.state == "pending",
               OutboxMessage.next_attempt_at < now - timedelta(seconds=OUTBOX_LATE_SECONDS))
        .order_by(OutboxMessage.next_attempt_at).limit(AUDIT_IDS)
    ))
    report.oldest_overdue_deadline_seconds = deadlines.oldest_overdue(now)
    report.oldest_pending_outbox_seconds = outbox.oldest_pending(now)
    db.session.commit()
    if report.late_deadline_ids:
        logger.warning("audit: deadline(s) overdue and not swept: %s (oldest %.1f s)",
                       report.late_deadline_ids, report.oldest_overdue_deadline_seconds or 0.0)
    if report.late_alert_ids:
        logger.warning("audit: alert step(s) overdue and not fired: alerts %s",
                       report.late_alert_ids)
    if report.late_outbox_ids:
        logger.warning("audit: message(s) pending past their attempt time: outbox %s "
                       "(oldest %.1f s)", report.late_outbox_ids,
                       report.oldest_pending_outbox_seconds or 0.0)
    return report
