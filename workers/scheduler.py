"""The scheduler: periodic jobs that call service functions or enqueue tasks.

Two ways to run it:

* ``oncall scheduler``: its own process (:func:`run_scheduler`), an APScheduler
  ``BlockingScheduler``. Run exactly one active scheduler per deployment.
* embedded mode (no broker): :func:`start_embedded_scheduler` runs the same kind of
  jobs in a background thread of ``oncall serve``.

Every job has a stable id and the defaults in :data:`JOB_DEFAULTS`: a late run is
never skipped (``misfire_grace_time=None``), missed runs collapse into one
(``coalesce``) and a job never overlaps itself (``max_instances=1``).
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from config.settings import Settings
from oncall.core.clock import utcnow

logger = logging.getLogger(__name__)

JOB_DEFAULTS: dict[str, Any] = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}

#: Stable job ids (a job added twice replaces itself instead of running twice).
HEARTBEAT_JOB_ID = "scheduler.heartbeat"
EMBEDDED_HEARTBEAT_JOB_ID = "embedded.heartbeat"

#: Interval of the scheduler process's heartbeat, in seconds.
HEARTBEAT_INTERVAL_SECONDS = 10
#: Redis key holding the last heartbeat (ISO 8601, UTC); it expires when beats stop.
HEARTBEAT_KEY = "oncall:scheduler:heartbeat"
HEARTBEAT_TTL_SECONDS = 6 * HEARTBEAT_INTERVAL_SECONDS

#: Key of :class:`SchedulerState` in ``app.extensions``.
EXTENSION_KEY = "oncall.scheduler"


@dataclass
class SchedulerState:
    """The scheduler running in this process and when its heartbeat last ran."""

    scheduler: BaseScheduler
    last_heartbeat: datetime | None = None


def heartbeat_redis_url(settings: Settings) -> str:
    """The Redis URL where the heartbeat is kept ('' when there is no Redis)."""
    if settings.redis_url:
        return settings.redis_url
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return settings.broker_url
    return ""


def record_heartbeat(app: Flask, now: datetime) -> None:
    """Store ``now`` as the scheduler's last run, in this process and in Redis if any."""
    url = heartbeat_redis_url(app.config["ONCALL"])
    if url:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.set(HEARTBEAT_KEY, now.isoformat(), ex=HEARTBEAT_TTL_SECONDS)
        finally:
            client.close()
    state = app.extensions.get(EXTENSION_KEY)
    if isinstance(state, SchedulerState):
        state.last_heartbeat = now
    logger.debug("scheduler heartbeat at %s", now.isoformat())


def last_heartbeat(settings: Settings) -> datetime | None:
    """When the scheduler process last ran its heartbeat (None: never, or too long ago)."""
    url = heartbeat_redis_url(settings)
    if not url:
        return None
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        raw = client.get(HEARTBEAT_KEY)
    finally:
        client.close()
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return datetime.fromisoformat(text).astimezone(UTC)


def _heartbeat_job(app: Flask) -> None:
    with app.app_context():
        record_heartbeat(app, utcnow())


def _embedded_heartbeat_job(app: Flask) -> None:
    # A no-op for now: the deadline sweep and the inline outbox relay come here.
    state = app.extensions.get(EXTENSION_KEY)
    if isinstance(state, SchedulerState):
        state.last_heartbeat = utcnow()


def build_scheduler(
    app: Flask, scheduler_class: type[BaseScheduler] = BlockingScheduler
) -> BaseScheduler:
    """A scheduler (blocking by default) with the process's jobs added, not started."""
    sched = scheduler_class(timezone=UTC, job_defaults=JOB_DEFAULTS)
    sched.add_job(
        _heartbeat_job,
        "interval",
        seconds=HEARTBEAT_INTERVAL_SECONDS,
        id=HEARTBEAT_JOB_ID,
        name="Scheduler heartbeat",
        args=(app,),
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )
    app.extensions[EXTENSION_KEY] = SchedulerState(scheduler=sched)
    return sched


def run_scheduler(app: Flask) -> None:
    """Run the scheduler process's jobs in the foreground until SIGTERM or SIGINT."""
    sched = build_scheduler(app)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("scheduler stopping (signal %s)", signum)
        sched.shutdown(wait=False)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logger.info("scheduler starting with jobs: %s", ", ".join(job.id for job in sched.get_jobs()))
    sched.start()
    logger.info("scheduler stopped")


def start_embedded_scheduler(app: Flask) -> BackgroundScheduler:
    """Start the in-process scheduler of embedded mode in a background thread.

    It runs one job every ``sweep_interval_seconds``; the scheduler is kept in
    ``app.extensions["oncall.scheduler"]`` and stops with the process.
    """
    settings: Settings = app.config["ONCALL"]
    sched = BackgroundScheduler(timezone=UTC, job_defaults=JOB_DEFAULTS, daemon=True)
    sched.add_job(
        _embedded_heartbeat_job,
        "interval",
        seconds=settings.sweep_interval_seconds,
        id=EMBEDDED_HEARTBEAT_JOB_ID,
        name="Embedded sweep",
        args=(app,),
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )
    app.extensions[EXTENSION_KEY] = SchedulerState(scheduler=sched)
    sched.start()
    logger.info("embedded scheduler started (every %ss)", settings.sweep_interval_seconds)
    return sched
