"""Tenancy: every query is scoped to the acting user's circle.

Services receive the acting user and read ``actor.circle_id``; they never take a
circle id from the request. A row of another circle is "not found".
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import BigInteger, Select, select

from oncall.errors import NotFound
from oncall.extensions import db

T = TypeVar("T")


class Tenant(Protocol):
    id: int
    circle_id: int
    role: str


def scoped(model: type[T], circle_id: int) -> Select[T]:
    """``SELECT model WHERE circle_id = :circle_id``."""
    return select(model).where(model.circle_id == circle_id)  # type: ignore[attr-defined]


def get_in_circle(
    model: type[T], row_id: int, circle_id: int, *, what: str | None = None, lock: bool = False
) -> T:
    """One row of the circle by id, or :class:`NotFound` (also for other circles' rows
    and for ids outside the key's range, which no row can have)."""
    name = what or model.__name__.lower()
    if not 1 <= row_id <= _max_id(model):
        raise NotFound(f"No {name} {row_id}.", code=f"{name}_not_found")
    stmt: Any = scoped(model, circle_id).where(model.id == row_id)  # type: ignore[attr-defined]
    if lock:
        # A locked read must also refresh a row the session already holds.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = db.session.scalars(stmt).first()
    if row is None:
        raise NotFound(f"No {name} {row_id}.", code=f"{name}_not_found")
    return row


def _max_id(model: Any) -> int:
    """The largest value the model's integer primary key can hold on PostgreSQL."""
    column_type = model.__table__.c.id.type
    impl = getattr(column_type, "impl", column_type)
    return 2**63 - 1 if isinstance(impl, BigInteger) else 2**31 - 1
