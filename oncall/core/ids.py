"""Row ids handed out before the insert, so that a batch of related rows flushes fast.

The escalation engine writes, per alert, the alert, its claims, timeline events,
stream events and outbox rows, which refer to one another. Asking the database
for each new id costs a round trip per row, and letting the unit of work fetch
them back makes one very long ``INSERT ... RETURNING`` per table. Inside
:func:`pooled` (one engine pass), rows get their ids from the table's
PostgreSQL sequence a block at a time (``nextval`` over ``generate_series``),
and each table's rows are then inserted by one prepared, pipelined
``executemany``. Outside a pass, rows are simply added (and flushed when their
id is needed now). SQLite has no sequences and no pooling: rows are added and
flushed as needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, insert, text
from sqlalchemy.orm import Session

from oncall.extensions import db

BLOCK = 256
_POOL_KEY = "oncall.id_pool"
_QUEUED_KEY = "oncall.queued_rows"


class IdPool:
    """Ids from the sequences of the tables it is asked about, a block at a time."""

    def __init__(self) -> None:
        self._free: dict[str, list[int]] = {}

    def take(self, table: str) -> int:
        free = self._free.setdefault(table, [])
        if not free:
            free.extend(
                db.session.scalars(
                    text(
                        "SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                        "FROM generate_series(1, :n)"
                    ),
                    {"table": table, "n": BLOCK},
                )
            )
            free.reverse()
        return free.pop()


def _pool() -> IdPool | None:
    pool: IdPool | None = db.session.info.get(_POOL_KEY)
    return pool


@contextmanager
def pooled() -> Iterator[None]:
    """Within this block (on PostgreSQL), :func:`add` gives rows their ids up front."""
    if db.session.get_bind().dialect.name != "postgresql" or _pool() is not None:
        yield
        return
    db.session.info[_POOL_KEY] = IdPool()
    try:
        yield
    finally:
        db.session.info.pop(_POOL_KEY, None)
        db.session.info.pop(_QUEUED_KEY, None)


def add(row: Any) -> None:
    """Add ``row`` to the session, with an id from the pass's pool when there is one."""
    pool = _pool()
    if pool is not None and getattr(row, "id", None) is None:
        row.id = pool.take(row.__table__.name)
    db.session.add(row)


def add_with_id(row: Any) -> int:
    """Add ``row`` and return its id now (from the pool, else by flushing it)."""
    add(row)
    if row.id is None:
        db.session.flush()
    return int(row.id)


def queue_row(model: Any, values: dict[str, Any]) -> int | None:
    """In a pooled pass, queue a row that nothing in the pass reads back, for one
    bulk insert per table at :func:`flush_queued`; returns its id. Outside a pass,
    None: the caller adds an ORM object instead.

    Timeline events, stream events and outbox rows of a sweep are written this
    way: no ORM object per row, one pipelined ``executemany`` per table.
    """
    pool = _pool()
    if pool is None:
        return None
    values["id"] = pool.take(model.__table__.name)
    queued: dict[Any, list[dict[str, Any]]] = db.session.info.setdefault(_QUEUED_KEY, {})
    queued.setdefault(model, []).append(values)
    return int(values["id"])


def flush_queued() -> None:
    """Flush the session, then insert the queued rows (they may refer to its rows)."""
    queued: dict[Any, list[dict[str, Any]]] | None = db.session.info.pop(_QUEUED_KEY, None)
    db.session.flush()
    for model, rows in (queued or {}).items():
        db.session.execute(insert(model), rows)


def _forget(session: Session, previous: Any) -> None:
    if not getattr(previous, "nested", False):
        session.info.pop(_QUEUED_KEY, None)


event.listen(Session, "after_soft_rollback", _forget)
