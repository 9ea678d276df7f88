"""The scheduler: the guarantee that every deadline is moved, even when tasks are lost.

Two ways to run it:

* ``oncall scheduler``: its own process (:func:`run_scheduler`), an APScheduler
  ``BlockingScheduler``. Several may run; one is active, holding a PostgreSQL
  advisory lock (:mod:`workers.leader`), the others wait as standbys. Its jobs:

  - ``scheduler.sweep`` every ``scheduler_sweep_seconds``: run the engine until
    nothing is due;
  - ``scheduler.relay`` as often, and at once after a sweep that wrote messages:
    send every outbox message that is due, from this process, so that messages
    go out even when the broker and every worker are gone. It is a job of its
    own so that a receiver that makes senders wait for their timeout never
    delays the next sweep, and with it the escalation of other alerts;
  - ``scheduler.horizon`` every 30 s: hand the broker a wake-up for everything
    falling due within the longest countdown a task may have, so that deadlines
    armed far ahead, or forgotten by a Redis that restarted, get their fast path;
  - ``scheduler.audit`` every 30 s: log anything late beyond a bound, store the
    figures for the health check;
  - ``scheduler.heartbeat`` every 10 s: tell the health check the active
    scheduler is alive;
  - ``scheduler.leader`` every second: a standby tries to take the lock.

* embedded mode (no broker): :func:`start_embedded_scheduler` runs an
  :class:`EmbeddedSweeper` thread inside ``oncall serve``: sweep, then sleep until
  a use case commits work, the next wake-up time, or ``sweep_interval_seconds``.

Every job has a stable id and the defaults in :data:`JOB_DEFAULTS`: a late run is
never skipped (``misfire_grace_time=None``), missed runs collapse into one
(``coalesce``) and a job never overlaps itself (``max_instances=1``). A job that
fails (the database is down) is logged and runs again at its next time; it never
stops the scheduler.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN, SchedulerEvent
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from config.settings import Settings
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.core.health import (
    AUDIT_KEY,
    HEARTBEAT_INTERVAL_SECONDS,
    HEARTBEAT_KEY,
    HEARTBEAT_TTL_SECONDS,
    SCHEDULER_EXTENSION_KEY,
    heartbeat_redis_url,
    last_heartbeat,
)
from oncall.extensions import db
from workers import sweep as sweeps
from workers.leader import RETRY_SECONDS, Leader

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIT_INTERVAL_SECONDS",
    "EXTENSION_KEY",
    "HEARTBEAT_INTERVAL_SECONDS",
    "HEARTBEAT_KEY",
    "HEARTBEAT_TTL_SECONDS",
    "HORIZON_INTERVAL_SECONDS",
    "JOB_DEFAULTS",
    "EmbeddedSweeper",
    "SchedulerState",
    "build_scheduler",
    "heartbeat_redis_url",
    "last_heartbeat",
    "record_heartbeat",
    "run_scheduler",
    "start_embedded_scheduler",
]

JOB_DEFAULTS: dict[str, Any] = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}

#: Stable job ids (a job added twice replaces itself instead of running twice).
HEARTBEAT_JOB_ID = "scheduler.heartbeat"
LEADER_JOB_ID = "scheduler.leader"
SWEEP_JOB_ID = "scheduler.sweep"
RELAY_JOB_ID = "scheduler.relay"
HORIZON_JOB_ID = "scheduler.horizon"
AUDIT_JOB_ID = "scheduler.audit"

HORIZON_INTERVAL_SECONDS = 30
AUDIT_INTERVAL_SECONDS = 30

#: Key of :class:`SchedulerState` in ``app.extensions``.
EXTENSION_KEY = SCHEDULER_EXTENSION_KEY


class Runner(Protocol):
    """What runs the jobs: an APScheduler scheduler or the embedded sweeper."""

    @property
    def running(self) -> bool: ...

    def shutdown(self, wait: bool = True) -> None: ...


@dataclass
class SchedulerState:
    """The scheduler running in this process and what it last did."""

    scheduler: Runner
    #: When the heartbeat (embedded: the sweeper's loop) last ran.
    last_heartbeat: datetime | None = None
    #: When a sweep last finished without error.
    last_sweep: datetime | None = None
    last_audit: sweeps.AuditReport | None = None
    leader: Leader | None = None

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)


def _state(app: Flask) -> SchedulerState | None:
    state = app.extensions.get(EXTENSION_KEY)
    return state if isinstance(state, SchedulerState) else None


def _redis_client(settings: Settings) -> Any:
    url = heartbeat_redis_url(settings)
    if not url:
        return None
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def record_heartbeat(app: Flask, now: datetime) -> None:
    """Store ``now`` as the scheduler's last run, in this process and in Redis if any."""
    client = _redis_client(app.config["ONCALL"])
    if client is not None:
        try:
            client.set(HEARTBEAT_KEY, now.isoformat(), ex=HEARTBEAT_TTL_SECONDS)
        finally:
            client.close()
    state = _state(app)
    if state is not None:
        state.last_heartbeat = now
    logger.debug("scheduler heartbeat at %s", now.isoformat())


def _store_audit(app: Flask, report: sweeps.AuditReport) -> None:
    state = _state(app)
    if state is not None:
        state.last_audit = report
    client = _redis_client(app.config["ONCALL"])
    if client is not None:
        try:
            client.set(AUDIT_KEY, json.dumps(report.as_dict()), ex=HEARTBEAT_TTL_SECONDS)
        except RedisError as exc:  # the findings are logged already; the heartbeat says more
            logger.debug("audit figures not stored: %s", type(exc).__name__)
        finally:
            client.close()


# --------------------------------------------------------------------------- jobs


def _job(name: str) -> Callable[[Callable[[Flask], None]], Callable[[Flask], None]]:
    """Run a job in an app context, remove its session after, and never let it raise."""

    def decorate(fn: Callable[[Flask], None]) -> Callable[[Flask], None]:
        @functools.wraps(fn)
        def run(app: Flask) -> None:
            with app.app_context():
                try:
                    fn(app)
                except OperationalError as exc:
                    logger.warning("%s failed, database unavailable (%s); next run retries",
                                   name, type(exc.orig).__name__ if exc.orig else "error")
                except (RedisError, OSError) as exc:
                    logger.warning("%s failed, connection error (%s); next run retries",
                                   name, type(exc).__name__)
                except Exception:
                    logger.exception("%s failed; next run retries", name)
                finally:
                    try:
                        db.session.remove()
                    except Exception as exc:  # a dead connection cannot even roll back
                        logger.debug("%s: session cleanup failed: %s", name, type(exc).__name__)

        return run

    return decorate


def _leads(app: Flask) -> bool:
    state = _state(app)
    return state is None or state.leader is None or state.leader.ensure()


@_job("heartbeat")
def _heartbeat_job(app: Flask) -> None:
    if _leads(app):
        record_heartbeat(app, utcnow())


#: Redis key the horizon job sets after handing over every wake-up. A Redis that
#: restarted empty has lost it, and with it the wake-ups: the leader check sees the
#: key gone and runs the horizon at once instead of up to 30 s later.
HORIZON_MARK_KEY = "oncall:scheduler:horizon"
#: The soonest the horizon is run again after a try that found the mark missing.
HORIZON_RETRY_SECONDS = 3.0
_horizon_tried: dict[int, float] = {}


@_job("leader check")
def _leader_job(app: Flask) -> None:
    if _leads(app) and app.config["ONCALL"].broker_url:
        _horizon_if_broker_forgot(app)


def _broker_client(settings: Settings) -> Any:
    """A client of the broker's Redis, where the wake-ups live (None: not Redis)."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    return redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=2)


def _horizon_if_broker_forgot(app: Flask) -> None:
    client = _broker_client(app.config["ONCALL"])
    if client is None:
        return
    try:
        present = bool(client.exists(HORIZON_MARK_KEY))
    except RedisError:
        return  # the broker is down: the sweep covers, and this runs again in a second
    finally:
        client.close()
    last = _horizon_tried.get(id(app), 0.0)
    if present or time.monotonic() - last < HORIZON_RETRY_SECONDS:
        return
    _horizon_tried[id(app)] = time.monotonic()
    state = _state(app)
    if state is None or not isinstance(state.scheduler, BaseScheduler):
        return
    logger.warning("scheduler: the broker lost its wake-ups (restarted empty?); handing "
                   "them over again now")
    try:
        state.scheduler.modify_job(HORIZON_JOB_ID, next_run_time=datetime.now(UTC))
    except Exception as exc:  # not started or shutting down: the next run does it
        logger.debug("could not run the horizon at once: %s", type(exc).__name__)


@_job("sweep")
def _sweep_job(app: Flask) -> None:
    if not _leads(app):
        return
    result = sweeps.run_engine(app.config["ONCALL"].sweep_batch_size)
    state = _state(app)
    if state is not None:
        state.last_sweep = utcnow()
    if result.messages_written:
        _relay_now(app)


@_job("relay")
def _relay_job(app: Flask) -> None:
    if not _leads(app):
        return
    result = sweeps.relay()
    if result.delivered or result.failed:
        logger.info("relay: %s delivered, %s to retry, %s failed",
                    result.delivered, result.retrying, result.failed)


def _relay_now(app: Flask) -> None:
    """Run the relay job at once: the sweep just wrote messages nobody else will send."""
    state = _state(app)
    if state is None or not isinstance(state.scheduler, BaseScheduler):
        return
    try:
        state.scheduler.modify_job(RELAY_JOB_ID, next_run_time=datetime.now(UTC))
    except Exception as exc:  # not started, or shutting down: the relay's next run sends them
        logger.debug("could not run the relay at once: %s", type(exc).__name__)


@_job("horizon")
def _horizon_job(app: Flask) -> None:
    if not _leads(app):
        return
    now = utcnow()
    times = sweeps.upcoming_times(now)
    sent = sweeps.horizon(dispatch.sender_of(app), now, times=times)
    if len(sent) == len(times):
        client = _broker_client(app.config["ONCALL"])
        if client is not None:
            try:
                client.set(HORIZON_MARK_KEY, now.isoformat())
            except RedisError as exc:
                logger.debug("horizon mark not stored: %s", type(exc).__name__)
            finally:
                client.close()


@_job("audit")
def _audit_job(app: Flask) -> None:
    if _leads(app):
        report = sweeps.audit(utcnow(), app.config["ONCALL"].scheduler_sweep_seconds)
        _store_audit(app, report)


def _add(sched: BaseScheduler, app: Flask, fn: Callable[[Flask], None], job_id: str,
         name: str, seconds: float) -> None:
    sched.add_job(
        fn,
        "interval",
        seconds=seconds,
        id=job_id,
        name=name,
        args=(app,),
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )


def build_scheduler(
    app: Flask, scheduler_class: type[BaseScheduler] = BlockingScheduler
) -> BaseScheduler:
    """A scheduler (blocking by default) with the process's jobs added, not started.

    The active-scheduler lock is released when the scheduler shuts down.
    """
    settings: Settings = app.config["ONCALL"]
    leader = Leader(settings.resolved_database_url())
    sched = scheduler_class(timezone=UTC, job_defaults=JOB_DEFAULTS)
    _add(sched, app, _leader_job, LEADER_JOB_ID, "Active-scheduler lock", RETRY_SECONDS)
    _add(sched, app, _sweep_job, SWEEP_JOB_ID, "Sweep deadlines and alert steps",
         settings.scheduler_sweep_seconds)
    _add(sched, app, _relay_job, RELAY_JOB_ID, "Relay the outbox", settings.scheduler_sweep_seconds)
    _add(sched, app, _heartbeat_job, HEARTBEAT_JOB_ID, "Scheduler heartbeat",
         HEARTBEAT_INTERVAL_SECONDS)
    _add(sched, app, _horizon_job, HORIZON_JOB_ID, "Wake-ups for what falls due soon",
         HORIZON_INTERVAL_SECONDS)
    _add(sched, app, _audit_job, AUDIT_JOB_ID, "Audit of late rows", AUDIT_INTERVAL_SECONDS)

    def _release(_event: SchedulerEvent) -> None:
        leader.release()

    sched.add_listener(_release, EVENT_SCHEDULER_SHUTDOWN)
    app.extensions[EXTENSION_KEY] = SchedulerState(scheduler=sched, leader=leader)
    return sched


def run_scheduler(app: Flask) -> None:
    """Run the scheduler process's jobs in the foreground until SIGTERM or SIGINT."""
    sched = build_scheduler(app)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("scheduler stopping (signal %s)", signum)
        sched.shutdown(wait=False)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    settings: Settings = app.config["ONCALL"]
    logger.info(
        "scheduler starting (sweep every %ss) with jobs: %s",
        settings.scheduler_sweep_seconds,
        ", ".join(job.id for job in sched.get_jobs()),
    )
    sched.start()
    logger.info("scheduler stopped")


# --------------------------------------------------------------------------- embedded


class EmbeddedSweeper:
    """The scheduler of embedded mode: one background thread that sweeps and sleeps.

    It sleeps on the application's :class:`~oncall.core.dispatch.EmbeddedSender`,
    so a use case that commits work, or the next wake-up time, ends the sleep at
    once; otherwise it sweeps every ``sweep_interval_seconds``. It also audits
    every :data:`AUDIT_INTERVAL_SECONDS`. Errors are logged and the loop goes on.
    """

    def __init__(self, app: Flask, sender: dispatch.EmbeddedSender, interval: float) -> None:
        self.app = app
        self.sender = sender
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="oncall-sweeper", daemon=True)
        self._last_audit = 0.0

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def shutdown(self, wait: bool = True) -> None:
        """Stop after the current sweep; ``wait`` joins the thread."""
        self._stop.set()
        # Wake the sleeping loop so that it sees the stop at once.
        self.sender.send(dispatch.PROCESS_DUE, ())
        if wait and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            _embedded_sweep(self.app)
            now = time.monotonic()
            if now - self._last_audit >= AUDIT_INTERVAL_SECONDS:
                self._last_audit = now
                _embedded_audit(self.app)
            if self._stop.is_set():
                break
            self.sender.wait(self.interval)
        logger.info("embedded sweeper stopped")


@_job("embedded sweep")
def _embedded_sweep(app: Flask) -> None:
    state = _state(app)
    now = utcnow()
    if state is not None:
        state.last_heartbeat = now
    sweeps.sweep(app.config["ONCALL"].sweep_batch_size)
    if state is not None:
        state.last_sweep = utcnow()


@_job("embedded audit")
def _embedded_audit(app: Flask) -> None:
    report = sweeps.audit(utcnow(), app.config["ONCALL"].sweep_interval_seconds)
    state = _state(app)
    if state is not None:
        state.last_audit = report


def start_embedded_scheduler(app: Flask) -> EmbeddedSweeper:
    """Start the in-process sweeper of embedded mode in a background thread.

    Work committed by use cases wakes it through the application's
    :class:`~oncall.core.dispatch.EmbeddedSender` (installed here if the
    application has another sender). It is kept in
    ``app.extensions["oncall.scheduler"]`` and stops with the process.
    """
    settings: Settings = app.config["ONCALL"]
    sender = dispatch.sender_of(app)
    if not isinstance(sender, dispatch.EmbeddedSender):
        sender = dispatch.EmbeddedSender()
        dispatch.init_app(app, sender)
    sweeper = EmbeddedSweeper(app, sender, settings.sweep_interval_seconds)
    app.extensions[EXTENSION_KEY] = SchedulerState(scheduler=sweeper)
    sweeper.start()
    logger.info("embedded scheduler started (sweeps every %ss, and at once when work "
                "is committed)", settings.sweep_interval_seconds)
    return sweeper
