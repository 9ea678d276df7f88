"""Fixed-window rate limits: Redis when configured, else an in-process counter.

A window is ``[k * window_seconds, (k + 1) * window_seconds)`` in Unix time, so
every process that shares the Redis server counts the same window. With Redis the
count is ``INCR`` + ``EXPIRE`` in one pipeline (atomic, no race between
requests); without it (embedded mode) a dictionary guarded by a lock counts per
process. If Redis cannot be reached the in-process counter takes over, so logins
keep working and stay limited per process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app

from oncall.errors import RateLimited

logger = logging.getLogger(__name__)

#: Prefix of every Redis key; ``app.config["RATELIMIT_PREFIX"]`` overrides it
#: (the tests give each test its own prefix).
DEFAULT_PREFIX = "oncall:rl:"
_EXTENSION = "oncall.ratelimit"
_MEMORY_MAX_KEYS = 10_000


@dataclass(frozen=True)
class Hit:
    """The count of one key in the current window after this attempt."""

    key: str
    count: int
    limit: int
    #: Seconds until the window ends (at least 1).
    retry_after: int

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit


@dataclass
class _State:
    redis: Any = None
    redis_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: key -> (window index, count)
    memory: dict[str, tuple[int, int]] = field(default_factory=dict)


def _state() -> _State:
    state = current_app.extensions.get(_EXTENSION)
    if state is None:
        state = current_app.extensions.setdefault(_EXTENSION, _State())
    return state


def _redis(state: _State) -> Any:
    url = current_app.config["ONCALL"].redis_url
    if not url:
        return None
    if state.redis is None or state.redis_url != url:
        import redis

        state.redis = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        state.redis_url = url
    return state.redis


def _prefix() -> str:
    return str(current_app.config.get("RATELIMIT_PREFIX") or DEFAULT_PREFIX)


def hit(key: str, limit: int, window_seconds: int, now: datetime, amount: int = 1) -> Hit:
    """Count ``amount`` attempts (0: only look) for ``key`` in the window containing
    ``now``; never raises."""
    if window_seconds < 1:
        raise ValueError("window_seconds must be at least 1")
    stamp = int(now.timestamp())
    index = stamp // window_seconds
    retry_after = max(1, (index + 1) * window_seconds - stamp)
    state = _state()
    client = _redis(state)
    if client is not None:
        name = f"{_prefix()}{key}:{index}"
        try:
            pipe = client.pipeline(transaction=True)
            pipe.incrby(name, amount)
            pipe.expire(name, window_seconds + 1)
            count = int(pipe.execute()[0])
            return Hit(key, count, limit, retry_after)
        except Exception as exc:  # any Redis failure: fall back to this process
            logger.warning("rate limit: Redis unavailable (%s); counting in process",
                           type(exc).__name__)
    name = f"{_prefix()}{key}"
    with state.lock:
        if len(state.memory) > _MEMORY_MAX_KEYS:
            for stale in [k for k, (i, _) in state.memory.items() if i != index]:
                del state.memory[stale]
        window, count = state.memory.get(name, (index, 0))
        count = count + amount if window == index else amount
        state.memory[name] = (index, count)
    return Hit(key, count, limit, retry_after)


def enforce(
    limits: Iterable[tuple[str, int]],
    window_seconds: int,
    now: datetime,
    message: str = "Too many attempts; try again later.",
) -> None:
    """Count one attempt on every ``(key, limit)``; raise 429 with Retry-After if any is over."""
    hits = [hit(key, limit, window_seconds, now) for key, limit in limits]
    refused = [h for h in hits if not h.allowed]
    if refused:
        retry_after = max(h.retry_after for h in refused)
        raise RateLimited(message, headers={"Retry-After": str(retry_after)})


def clear() -> None:
    """Forget every count of this application (Redis keys under its prefix and memory)."""
    state = _state()
    with state.lock:
        state.memory.clear()
    client = _redis(state)
    if client is None:
        return
    try:
        keys = list(client.scan_iter(match=f"{_prefix()}*", count=500))
        if keys:
            client.delete(*keys)
    except Exception as exc:
        logger.warning("rate limit: could not clear Redis keys (%s)", type(exc).__name__)
