"""Helpers shared by the visit use cases: row locks, the transaction wrapper, the
role check, loading a visit the user may see, and the circle's time zone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from oncall.accounts.models import User
from oncall.circles.models import Circle
from oncall.core.tenancy import scoped
from oncall.errors import Forbidden, NotFound
from oncall.extensions import db
from oncall.visits.checks import MAX_BIGINT, is_id
from oncall.visits.models import Visit

P = ParamSpec("P")
R = TypeVar("R")

DISPATCH_ROLES = ("dispatcher", "admin")
MANAGE_ROLES = ("dispatcher", "coordinator", "admin")


def locked(stmt: Any, *, key_share: bool = False) -> Any:
    """``SELECT ... FOR UPDATE`` (``FOR NO KEY UPDATE`` with ``key_share``) on PostgreSQL.

    A copy of the row already in the session is refreshed: the locked read is the
    one to trust.
    """
    return stmt.with_for_update(key_share=key_share).execution_options(populate_existing=True)


def atomic(fn: Callable[P, R]) -> Callable[P, R]:
    """Roll the session back (releasing row locks) when the use case fails."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except BaseException:
            db.session.rollback()
            raise

    return wrapper


def require_role(actor: User, roles: Sequence[str]) -> None:
    """Forbidden (403 ``role_forbidden``) unless ``actor`` has one of ``roles``."""
    if actor.role not in roles:
        raise Forbidden(f"This needs the role {' or '.join(sorted(roles))}.", code="role_forbidden")


def visit_not_found(visit_id: int) -> NotFound:
    """The 404 of a visit that does not exist or that the user may not see."""
    return NotFound(f"No visit {visit_id}.", code="visit_not_found")


def load_visit(actor: User, visit_id: int, *, lock: bool = False) -> Visit:
    """The visit if ``actor`` may see it (a doctor only their own), else NotFound."""
    if not is_id(visit_id, MAX_BIGINT):
        raise visit_not_found(visit_id)
    stmt: Any = scoped(Visit, actor.circle_id).where(Visit.id == visit_id)
    if actor.role == "doctor":
        stmt = stmt.where(Visit.doctor_id == actor.id)
    if lock:
        stmt = locked(stmt)
    visit = db.session.scalars(stmt).first()
    if visit is None:
        raise visit_not_found(visit_id)
    return visit


def circle_timezone(actor: User) -> str:
    """The time zone of the actor's circle (naive input datetimes are local to it)."""
    circle = db.session.get(Circle, actor.circle_id)
    return circle.timezone if circle is not None and circle.timezone else "Europe/Brussels"
