"""The consoles' live stream as server-sent events.

A console connects to ``GET /api/v1/stream`` and receives its circle's
:class:`~oncall.notify.models.StreamEvent` rows as they are committed::

    id: 42
    event: alert.opened
    data: {"subject_type": "alert", "subject_id": 7, "at": "...", "data": {...}}

A fresh connection starts with ``event: hello`` carrying the current last id
(the console loads its state, then applies what follows). A reconnection with
``Last-Event-ID`` replays every event after that id instead. New rows are read
when a Redis message on ``oncall:stream:<circle id>`` nudges the stream, and
every few seconds anyway in case a nudge was lost (pub/sub is at-most-once);
without Redis the table is polled every second.

The generator holds no database connection while it waits: each read runs in
an application context of its own, whose end gives the connection back. A
comment line (``: keep-alive``) goes out every 15 seconds, which also shows a
closed connection to the server; at each one the viewer's account and token
are checked again, so that a deactivated user or a revoked token stops
receiving events. After a maximum lifetime the server ends
the stream and the client reconnects with ``Last-Event-ID``.

Ids come from one sequence but transactions commit in any order: a row may
become visible after a row with a higher id. Rows are therefore read from a
floor that trails the last id by a short look-back period, and the ids already
sent above it are remembered, so such a row is still sent once. A client may
then see ids out of order; on reconnection it may receive a few events twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from oncall.accounts.models import ApiToken, User
from oncall.core.clock import utcnow
from oncall.core.timeline import jsonable
from oncall.extensions import db
from oncall.notify.models import StreamEvent
from oncall.notify.stream import channel_name

logger = logging.getLogger(__name__)

#: Roles that may open the stream. Doctors may not: a duress alert must never reach
#: the doctor's own phone.
STREAM_ROLES = ("admin", "coordinator", "dispatcher")
#: Rows read per query.
BATCH = 500
#: More missed events than this are not replayed: the console is told to reload.
REPLAY_MAX = 1000
#: How long a client waits before reconnecting after the stream ends (milliseconds).
RETRY_MS = 3000


@dataclass(frozen=True)
class Timing:
    """The stream's clocks, in seconds (the application's config may override each)."""

    heartbeat: float = 15.0
    max_lifetime: float = 600.0
    #: Table polling interval without Redis.
    poll: float = 1.0
    #: With Redis, read the table this often even without a nudge.
    fallback: float = 5.0
    #: How long a row may stay invisible after a higher id was seen.
    lookback: float = 30.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Timing:
        """Defaults, overridden by ``STREAM_HEARTBEAT_SECONDS``, ``STREAM_MAX_SECONDS``,
        ``STREAM_POLL_SECONDS``, ``STREAM_FALLBACK_SECONDS`` and ``STREAM_LOOKBACK_SECONDS``."""
        names = {
            "heartbeat": "STREAM_HEARTBEAT_SECONDS",
            "max_lifetime": "STREAM_MAX_SECONDS",
            "poll": "STREAM_POLL_SECONDS",
            "fallback": "STREAM_FALLBACK_SECONDS",
            "lookback": "STREAM_LOOKBACK_SECONDS",
        }
        return cls(**{field: float(config[key]) for field, key in names.items() if key in config})


@dataclass(frozen=True)
class Viewer:
    """Who watches the stream, kept as plain values: no ORM row outlives a read."""

    user_id: int
    circle_id: int
    #: The SHA-256 digest of the bearer token used (None for a console session).
    token_digest: str | None = None


def message(event: str, data: Any, event_id: int | None = None) -> str:
    """One server-sent event: ``id``, ``event`` and one ``data`` line of compact JSON."""
    lines = [] if event_id is None else [f"id: {event_id}"]
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(jsonable(data), separators=(",", ":"), sort_keys=True))
    return "\n".join(lines) + "\n\n"


def _event_message(row: StreamEvent) -> str:
    payload = {
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "at": row.at,
        "data": row.data or {},
    }
    return message(row.kind, payload, row.id)


def _last_id(circle_id: int) -> int:
    """The circle's highest event id (0 when it has none)."""
    found = db.session.scalar(
        select(func.max(StreamEvent.id)).where(StreamEvent.circle_id == circle_id)
    )
    return int(found or 0)


def _too_many_after(circle_id: int, after: int) -> bool:
    """True when more than :data:`REPLAY_MAX` events follow ``after``."""
    ids = (
        select(StreamEvent.id)
        .where(StreamEvent.circle_id == circle_id, StreamEvent.id > after)
        .limit(REPLAY_MAX + 1)
        .subquery()
    )
    return int(db.session.scalar(select(func.count()).select_from(ids)) or 0) > REPLAY_MAX


def still_allowed(viewer: Viewer) -> bool:
    """True while the viewer's account is active with a stream role, in the same circle,
    and their bearer token (if any) is neither revoked nor expired."""
    user = db.session.get(User, viewer.user_id, populate_existing=True)
    if user is None or not user.active or user.circle_id != viewer.circle_id:
        return False
    if user.role not in STREAM_ROLES:
        return False
    if viewer.token_digest is None:
        return True
    token = db.session.scalars(
        select(ApiToken).where(ApiToken.token_hash == viewer.token_digest)
    ).first()
    return token is not None and token.revoked_at is None and token.expires_at > utcnow()


class _Cursor:
    """What the stream has sent: the last id, and a trailing floor with the ids sent above
    it (see the module's note on rows that become visible late)."""

    def __init__(self, start: int, lookback: float) -> None:
        self.last = start
        self.floor = start
        self.sent: set[int] = set()
        self.lookback = lookback
        self._marks: deque[tuple[float, int]] = deque()

    def read(self, circle_id: int) -> list[StreamEvent]:
        """The circle's rows not yet sent, oldest id first (all of them, batch by batch)."""
        now = time.monotonic()
        while self._marks and self._marks[0][0] <= now - self.lookback:
            self.floor = max(self.floor, self._marks.popleft()[1])
        self.sent = {i for i in self.sent if i > self.floor}
        found: list[StreamEvent] = []
        after = self.floor
        while True:
            rows = list(
                db.session.scalars(
                    select(StreamEvent)
                    .where(StreamEvent.circle_id == circle_id, StreamEvent.id > after)
                    .order_by(StreamEvent.id)
                    .limit(BATCH)
                )
            )
            found.extend(r for r in rows if r.id not in self.sent)
            if len(rows) < BATCH:
                break
            after = rows[-1].id
        for row in found:
            self.sent.add(row.id)
            self.last = max(self.last, row.id)
        self._marks.append((now, self.last))
        return found


class _Nudges:
    """The Redis subscription of a circle's stream; polling when there is none."""

    def __init__(self, redis_url: str, circle_id: int) -> None:
        self._pubsub: Any = None
        if not redis_url:
            return
        try:
            import redis

            client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel_name(circle_id))
            self._pubsub = pubsub
        except Exception:  # any Redis failure: poll instead, the stream still works
            logger.warning("stream of circle %s polls: Redis is not reachable", circle_id)

    @property
    def subscribed(self) -> bool:
        return self._pubsub is not None

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a nudge; True when one came."""
        if self._pubsub is None:
            time.sleep(max(timeout, 0.0))
            return False
        try:
            got = self._pubsub.get_message(timeout=max(timeout, 0.0)) is not None
            # Several commits in a row nudge several times; one read serves them all.
            while got and self._pubsub.get_message(timeout=0.0) is not None:
                pass
            return got
        except Exception:  # the subscription broke: poll from now on
            logger.warning("stream nudges lost (Redis error); polling instead")
            self.close()
            return False

    def close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # closing a broken connection may fail too
                logger.debug("closing the stream subscription failed", exc_info=True)
            self._pubsub = None


def _opening(viewer: Viewer, last_event_id: int | None,
             lookback: float) -> tuple[_Cursor, list[str]]:
    """Where the stream starts and what it sends first: ``hello`` with the last id, or
    the events after ``last_event_id`` (``hello`` with ``reload`` when too many)."""
    if last_event_id is not None and not _too_many_after(viewer.circle_id, last_event_id):
        cursor = _Cursor(last_event_id, lookback)
        return cursor, [_event_message(r) for r in cursor.read(viewer.circle_id)]
    start = _last_id(viewer.circle_id)
    hello = {"last_id": start, "reload": last_event_id is not None}
    return _Cursor(start, lookback), [message("hello", hello, start)]


def _next_batch(viewer: Viewer, cursor: _Cursor, check_access: bool) -> list[str] | None:
    """The messages of the rows not sent yet; None when the viewer lost access (checked
    first, so that nothing more reaches them)."""
    if check_access and not still_allowed(viewer):
        logger.info("stream of user %s ended: no longer allowed", viewer.user_id)
        return None
    return [_event_message(r) for r in cursor.read(viewer.circle_id)]


def events(
    app: Flask, viewer: Viewer, last_event_id: int | None, timing: Timing, redis_url: str
) -> Iterator[str]:
    """The stream's text, message by message, until its lifetime ends, the viewer loses
    access or the client leaves.

    Each read runs in an application context of its own, which gives its database
    connection back when it ends: between reads the stream holds no connection and
    no context, so an abandoned stream can be dropped at any point.
    """
    ends = time.monotonic() + timing.max_lifetime
    yield f"retry: {RETRY_MS}\n\n"
    # Subscribe before the first read, so that no commit falls between the two.
    nudges = _Nudges(redis_url, viewer.circle_id)
    try:
        with app.app_context():
            cursor, opening = _opening(viewer, last_event_id, timing.lookback)
        yield from opening
        beat = time.monotonic() + timing.heartbeat
        while True:
            now = time.monotonic()
            if now >= ends:
                return
            interval = timing.fallback if nudges.subscribed else timing.poll
            nudges.wait(min(beat, ends, now + interval) - now)
            due = time.monotonic() >= beat
            with app.app_context():
                batch = _next_batch(viewer, cursor, check_access=due)
            if batch is None:
                return
            yield from batch
            if due:
                yield ": keep-alive\n\n"
                beat = time.monotonic() + timing.heartbeat
    finally:
        nudges.close()
