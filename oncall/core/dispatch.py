"""Hand work to the workers once the transaction that decided it has committed.

Services never talk to Celery directly and never import ``workers``: they call
:func:`after_commit` (run a task by name) or :func:`wake_at` (make the engine
look at the database at a given instant). Nothing is sent if the transaction
rolls back, and nothing is sent before the rows it refers to are visible.

Three modes, chosen by the application at start (:func:`init_app`):

* ``celery``: tasks are sent to the broker. A wake-up becomes one
  ``alerts.process_due`` task per 100 ms bucket, deduplicated in Redis, with a
  countdown capped at :data:`config.celery.MAX_COUNTDOWN_SECONDS`; later wake-ups
  are enqueued by the scheduler's horizon job. A lost message costs at most one
  sweep interval: the scheduler sweeps the same rows.
* ``embedded``: no broker. Work is handed to the in-process sweeper, which is
  woken at once (or at the wake-up time).
* ``off``: nothing is sent (tests that drive the engine by hand).

Sending never fails the caller: the data is committed, and a broker that is down
is logged and left to the sweep.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from flask import Flask, current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from config.celery import MAX_COUNTDOWN_SECONDS

logger = logging.getLogger(__name__)

EXTENSION_KEY = "oncall.dispatch"
_SESSION_KEY = "oncall.after_commit"

PROCESS_DUE = "alerts.process_due"
DELIVER = "notify.deliver"

#: Wake-ups closer than this share one task.
BUCKET_MS = 100


class Sender(Protocol):
    """Where committed work goes."""

    def send(self, task: str, args: tuple[Any, ...]) -> None: ...

    def wake_at(self, when: datetime) -> None: ...


class NullSender:
    """Sends nothing; remembers what it was given (tests look at it)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.wakes: list[datetime] = []

    def send(self, task: str, args: tuple[Any, ...]) -> None:
        self.sent.append((task, args))

    def wake_at(self, when: datetime) -> None:
        self.wakes.append(when)


class EmbeddedSender:
    """Wakes the in-process sweeper: it runs the engine and delivers the outbox."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._next: datetime | None = None

    def send(self, task: str, args: tuple[Any, ...]) -> None:
        self._event.set()

    def wake_at(self, when: datetime) -> None:
        with self._lock:
            if self._next is None or when < self._next:
                self._next = when
        self._event.set()

    def wait(self, timeout: float) -> None:
        """Block until woken or ``timeout`` seconds pass (the sweeper's idle loop)."""
        with self._lock:
            nearest = self._next
        if nearest is not None:
            timeout = min(timeout, max(0.0, (nearest - datetime.now(UTC)).total_seconds()))
        self._event.wait(timeout)
        self._event.clear()
        with self._lock:
            if self._next is not None and self._next <= datetime.now(UTC):
                self._next = None


class BrokerDown(Exception):
    """The broker failed recently; sends are skipped for a while (the sweep covers them)."""


class CelerySender:
    """Sends tasks by name to the broker; wake-ups are deduplicated per bucket in Redis.

    After a failed send, further sends are skipped for :data:`PAUSE_SECONDS`
    instead of each waiting for its own timeout: a web request or a sweep that
    queues many wake-ups must not stall on a broker that is down, and the
    scheduler's sweep does their work meanwhile.
    """

    PAUSE_SECONDS = 5.0

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        producer = Celery("oncall-producer")
        producer.config_from_object("config.celery")
        producer.conf.broker_url = broker_url
        self._celery = producer
        self._redis_url = broker_url if broker_url.startswith(("redis://", "rediss://")) else ""
        self._redis: Any = None
        self._paused_until = 0.0

    def _guard(self) -> None:
        if time.monotonic() < self._paused_until:
            raise BrokerDown("broker failed recently; left to the sweep")

    def _failed(self) -> None:
        self._paused_until = time.monotonic() + self.PAUSE_SECONDS

    def _client(self) -> Any:
        if self._redis is None and self._redis_url:
            import redis

            self._redis = redis.Redis.from_url(
                self._redis_url, socket_connect_timeout=1, socket_timeout=1
            )
        return self._redis

    def send(self, task: str, args: tuple[Any, ...]) -> None:
        self._guard()
        try:
            self._celery.send_task(task, args=list(args))
        except Exception:
            self._failed()
            raise

    def wake_at(self, when: datetime) -> None:
        self._guard()
        try:
            self._wake_at(when)
        except Exception:
            self._failed()
            raise

    def _wake_at(self, when: datetime) -> None:
        now = datetime.now(UTC)
        delay = (when - now).total_seconds()
        if delay > MAX_COUNTDOWN_SECONDS:
            return  # the scheduler's horizon job enqueues it when it comes near
        if delay <= 0:
            self._celery.send_task(PROCESS_DUE)
            return
        bucket = math.ceil(when.timestamp() * 1000 / BUCKET_MS)
        client = self._client()
        if client is not None:
            ttl_ms = int(delay * 1000) + 60_000
            if not client.set(f"oncall:wake:{bucket}", 1, nx=True, px=ttl_ms):
                return  # a task for this bucket is already on its way
        eta = datetime.fromtimestamp(bucket * BUCKET_MS / 1000, UTC)
        self._celery.send_task(PROCESS_DUE, eta=eta)


def init_app(app: Flask, sender: Sender | None = None) -> Sender:
    """Choose the sender for ``app`` (Celery with a broker, embedded without one)."""
    if sender is None:
        settings = app.config["ONCALL"]
        if settings.broker_url:
            sender = CelerySender(settings.broker_url)
        elif settings.profile == "test":
            sender = NullSender()
        else:
            sender = EmbeddedSender()
    app.extensions[EXTENSION_KEY] = sender
    return sender


def sender_of(app: Flask) -> Sender:
    """The sender of ``app``."""
    sender: Sender = app.extensions[EXTENSION_KEY]
    return sender


def _queue(session: Session) -> list[Callable[[Sender], None]]:
    # Work belongs to a transaction: begin one if none is open, so that its commit
    # sends the work and its rollback forgets it.
    if not session.in_transaction():
        session.connection()
    pending: list[Callable[[Sender], None]] = session.info.setdefault(_SESSION_KEY, [])
    return pending


def after_commit(task: str, *args: Any) -> None:
    """Send ``task`` with ``args`` once the current transaction commits."""
    from oncall.extensions import db

    _queue(db.session()).append(lambda sender: sender.send(task, args))


def wake_at(when: datetime) -> None:
    """Make the engine look at the database at ``when``, once the transaction commits."""
    from oncall.extensions import db

    _queue(db.session()).append(lambda sender: sender.wake_at(when))


def on_commit(fn: Callable[[], None]) -> None:
    """Call ``fn`` once the current transaction commits (never if it rolls back)."""
    from oncall.extensions import db

    _queue(db.session()).append(lambda _sender: fn())


def _flush(session: Session) -> None:
    pending = session.info.pop(_SESSION_KEY, None)
    if not pending or not has_app_context():
        return
    sender = current_app.extensions.get(EXTENSION_KEY)
    if sender is None:
        return
    skipped = 0
    for item in pending:
        try:
            item(sender)
        except BrokerDown:
            skipped += 1
        except Exception as exc:  # the sweep will find the rows; never fail the caller
            logger.warning("could not hand work to the broker (%s); the sweep will", exc)
    if skipped:
        logger.warning("broker down: %s hand-off(s) left to the sweep", skipped)


def _discard(session: Session, previous: Any) -> None:
    """Forget what a rolled-back transaction asked for (savepoints aside)."""
    if getattr(previous, "nested", False):
        return
    session.info.pop(_SESSION_KEY, None)


event.listen(Session, "after_commit", _flush)
event.listen(Session, "after_soft_rollback", _discard)
