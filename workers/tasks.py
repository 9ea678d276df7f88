"""Thin tasks: each calls one service function with ids and returns.

Every task has an explicit name and a route in ``config.celery.TASK_ROUTES``.
Tasks are acknowledged late and may run twice or late: each one re-reads the
rows under a lock and finds nothing to do the second time. A task that fails is
logged and not retried here: the scheduler's sweep moves the same rows within
one sweep interval.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from flask import current_app

from oncall.alerts import engine
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.notify import outbox

logger = logging.getLogger(__name__)

#: Engine transactions one ``alerts.process_due`` runs at most (then it leaves the rest
#: to the tasks it sent and to the sweep).
MAX_BATCHES = 50


@shared_task(name="system.ping", ignore_result=False)
def ping() -> str:
    """Answer ``"pong"``: proves a worker consumes the queue and can return a result."""
    logger.info("ping")
    return "pong"


@shared_task(name=dispatch.PROCESS_DUE)
def process_due() -> dict[str, int]:
    """Move what is due now and deliver the messages it wrote, in this task.

    When a batch hits the limit, another ``alerts.process_due`` is sent before
    delivering, so that other worker processes take part in a burst (``SKIP
    LOCKED`` gives each its own rows). Delivery runs here, not as another task:
    one hop less between the deadline and the message. Last, the messages whose
    next attempt is due are sent: a wake-up is also how a retry is scheduled.
    """
    batch_size: int = current_app.config["ONCALL"].sweep_batch_size
    totals = {"batches": 0, "missed": 0, "steps_fired": 0, "delivered": 0}
    for _ in range(MAX_BATCHES):
        done = engine.process_due(utcnow(), limit=batch_size)
        totals["batches"] += 1
        totals["missed"] += done.missed
        totals["steps_fired"] += done.steps_fired
        if done.full:
            _share_the_burst()
        if done.outbox_ids:
            totals["delivered"] += len(outbox.deliver(done.outbox_ids).delivered)
        if not done.full:
            break
    # A wake-up may also be a message's next attempt time (after a failed attempt).
    totals["delivered"] += len(outbox.relay(max_batches=1).delivered)
    return totals


def _share_the_burst() -> None:
    """Ask another worker to share the burst; a broker that is down is left to the sweep."""
    try:
        dispatch.sender_of(current_app).send(dispatch.PROCESS_DUE, ())
    except Exception as exc:  # the rows are committed: the next batch or the sweep takes them
        logger.warning("could not send another %s: %s", dispatch.PROCESS_DUE, type(exc).__name__)


@shared_task(name=dispatch.DELIVER)
def deliver(ids: list[int]) -> dict[str, Any]:
    """Send the given outbox rows if they are still pending and due."""
    result = outbox.deliver(ids)
    return {"delivered": len(result.delivered), "retrying": len(result.retrying),
            "failed": len(result.failed)}


@shared_task(name="notify.relay")
def relay() -> dict[str, Any]:
    """Send every outbox row that is due."""
    result = outbox.relay()
    return {"delivered": len(result.delivered), "retrying": len(result.retrying),
            "failed": len(result.failed)}
