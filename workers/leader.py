"""One active scheduler per deployment: a PostgreSQL advisory lock held for life.

APScheduler 3 has no notion of several processes; two schedulers running the
same jobs would sweep twice (harmless, the engine is idempotent) but also hide
which one is really working. So the scheduler process takes a session-level
advisory lock on a connection of its own, not one from the pool the jobs use,
and keeps that connection open for as long as it lives. A second scheduler
started beside it finds the lock taken and waits as a standby, trying again
every second; when the first one dies its session ends, PostgreSQL releases the
lock and the standby takes over.

Before each sweep the leader runs ``SELECT 1`` on its lock connection. If the
connection is gone (PostgreSQL restarted, the backend was terminated), the lock
went with it: the process drops leadership at once and tries to take the lock
again on a new connection. It never sweeps without holding the lock. A sweep
that was already running when the connection died may overlap the new leader's
first sweep; the engine's row locks and claims make that harmless.

Any other database (SQLite, embedded mode) has no lock: a single process is the
only one that can use it, so :class:`Leader` always leads there.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

logger = logging.getLogger(__name__)

#: The advisory lock key of the active scheduler ("oncall" in ASCII). Advisory
#: locks belong to one database, so deployments sharing a server do not collide.
LOCK_KEY = 0x6F6E63616C6C
#: How often a standby tries to take the lock, in seconds.
RETRY_SECONDS = 1.0
#: A standby repeats that it is waiting at most this often, in seconds.
STANDBY_LOG_SECONDS = 60.0
#: Shown in ``pg_stat_activity`` for the lock connection.
APPLICATION_NAME = "oncall-scheduler-lock"


class Leader:
    """Holds (or waits for) the scheduler's advisory lock on a dedicated connection.

    Thread-safe: the scheduler's jobs run in a thread pool and each one asks
    :meth:`ensure` before it works.
    """

    def __init__(self, database_url: str, *, key: int = LOCK_KEY) -> None:
        self.key = key
        url = make_url(database_url)
        self._needs_lock = url.get_backend_name() == "postgresql"
        self._engine: Engine | None = None
        if self._needs_lock:
            self._engine = create_engine(
                url, poolclass=NullPool, connect_args=_connect_args(), future=True
            )
        self._conn: Connection | None = None
        self._leading = not self._needs_lock
        self._mutex = threading.RLock()
        self._last_standby_log: float | None = None
        #: The server process id of the lock connection (None without one).
        self.backend_pid: int | None = None

    @property
    def is_leader(self) -> bool:
        """True when this process held the lock at the last check."""
        return self._leading

    @property
    def uses_lock(self) -> bool:
        """False for databases without advisory locks (this process always leads)."""
        return self._needs_lock

    def ensure(self) -> bool:
        """Check the lock is still held, or try to take it; True when this process leads.

        Never raises: a database that cannot be reached means "not the leader now".
        """
        if not self._needs_lock:
            return True
        with self._mutex:
            if self._leading:
                if self._alive():
                    return True
                logger.warning(
                    "scheduler lost its lock connection; no longer the active scheduler"
                )
                self._drop()
                self._last_standby_log = None
            return self._try_acquire()

    def release(self) -> None:
        """Give the lock up and close the connection (the process is stopping)."""
        if not self._needs_lock:
            return
        with self._mutex:
            was_leading = self._leading
            if self._conn is not None and self._leading:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                except Exception as exc:  # closing the connection releases it anyway
                    logger.debug("advisory unlock failed: %s", type(exc).__name__)
            self._drop()
            if was_leading:
                logger.info("scheduler released the active-scheduler lock")
        if self._engine is not None:
            self._engine.dispose()

    # ------------------------------------------------------------------ inside

    def _alive(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # any driver error: the session (and its lock) is gone
            logger.debug("lock connection check failed: %s", type(exc).__name__)
            return False

    def _connect(self) -> Connection:
        assert self._engine is not None
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self.backend_pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        return conn

    def _try_acquire(self) -> bool:
        try:
            if self._conn is None:
                self._conn = self._connect()
            got = bool(
                self._conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}
                ).scalar_one()
            )
        except Exception as exc:  # database down: stay standby, try again next time
            logger.warning(
                "scheduler cannot reach the database to take its lock: %s", type(exc).__name__
            )
            self._drop()
            return False
        if got:
            self._leading = True
            logger.info("scheduler is now the active scheduler (lock connection pid %s)",
                        self.backend_pid)
            return True
        now = time.monotonic()
        last = self._last_standby_log
        if last is None or now - last >= STANDBY_LOG_SECONDS:
            self._last_standby_log = now
            logger.info("scheduler is standby: another scheduler holds the lock")
        return False

    def _drop(self) -> None:
        self._leading = False
        conn, self._conn = self._conn, None
        self.backend_pid = None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception as exc:  # already broken
                logger.debug("closing the lock connection failed: %s", type(exc).__name__)


def _connect_args() -> dict[str, Any]:
    """libpq options: fail fast when the server is away, and notice a dead peer."""
    return {
        "connect_timeout": 5,
        "application_name": APPLICATION_NAME,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
