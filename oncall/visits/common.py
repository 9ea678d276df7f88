"""Helpers shared by the visit use cases: row locks, the transaction wrapper, the
role check, loading a visit the user may see, the circle's settings, and the one
place a visit changes state."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from oncall.accounts.models import User
from oncall.circles.models import Circle
from oncall.core.tenancy import scoped
from oncall.core.timeline import record
from oncall.errors import Conflict, Forbidden, NotFound
from oncall.extensions import db
from oncall.visits.checks import MAX_BIGINT, is_id
from oncall.visits.models import TRANSITIONS, Visit

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
        # FOR NO KEY UPDATE: no visit use case changes the key, and the engine's
        # inserts that reference the visit (a missed deadline's alert) take FOR KEY
        # SHARE on it. A plain FOR UPDATE would block them while this use case waits
        # on the deadline row the engine holds: a deadlock.
        stmt = locked(stmt, key_share=True)
    visit = db.session.scalars(stmt).first()
    if visit is None:
        raise visit_not_found(visit_id)
    return visit


def circle_timezone(actor: User) -> str:
    """The time zone of the actor's circle (naive input datetimes are local to it)."""
    circle = db.session.get(Circle, actor.circle_id)
    return circle.timezone if circle is not None and circle.timezone else "Europe/Brussels"


def circle_settings(circle_id: int) -> Circle:
    """The circle row, for its deadline settings (arrival, visit and reminder minutes)."""
    circle = db.session.get(Circle, circle_id)
    if circle is None:  # the actor's circle exists: its users reference it
        raise NotFound(f"No circle {circle_id}.", code="circle_not_found")
    return circle


def event(visit: Visit, kind: str, actor: User | None, now: datetime, **data: Any) -> None:
    """A timeline event of the visit, by ``actor`` (None for the system)."""
    record(visit.circle_id, "visit", visit.id, kind, now, actor.id if actor else None, **data)


def move(
    visit: Visit,
    to: str,
    *,
    actor: User | None,
    now: datetime,
    kind: str,
    code: str,
    **data: Any,
) -> None:
    """The one place a visit changes state: checks TRANSITIONS, stamps, writes the event.

    Raises :class:`Conflict` (409, ``code``) naming the from and to states when the
    table does not allow the change.
    """
    origin = visit.status
    if to not in TRANSITIONS.get(origin, frozenset()):
        raise Conflict(
            f"Visit {visit.id} is {origin}; it cannot become {to}.",
            code=code,
            fields={"status": [f"{origin} -> {to} is not allowed"]},
        )
    visit.status = to
    visit.updated_at = now
    event(visit, kind, actor, now, from_status=origin, to_status=to, **data)


def store_location(
    visit: Visit, location: Mapping[str, float | None] | None, now: datetime
) -> None:
    """Keep the doctor's position sent with a check-in or check-out as the visit's last one."""
    if location is None:
        return
    visit.last_lat = location["lat"]
    visit.last_lon = location["lon"]
    visit.last_accuracy_m = location.get("accuracy")
    visit.last_location_at = now
