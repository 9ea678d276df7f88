"""Escalation policies: the steps an alert of each kind follows in a circle.

A circle that never changed a kind's policy follows the defaults of
:data:`oncall.circles.models.DEFAULT_POLICIES`; an alert keeps a copy of the steps
it was opened with, so replacing a policy never changes open alerts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from oncall.accounts.models import User
from oncall.accounts.services import require_admin
from oncall.circles.models import (
    ALERT_KINDS,
    DEFAULT_POLICIES,
    STEP_TARGETS,
    STOP_ON,
    Circle,
    EscalationPolicy,
)
from oncall.core.paging import DEFAULT_LIMIT, check_page, envelope
from oncall.core.tenancy import scoped
from oncall.core.timeline import record
from oncall.errors import NotFound, Validator
from oncall.extensions import db

MAX_STEPS = 10
#: The longest wait or repeat interval a step may have (one day).
MAX_STEP_SECONDS = 86_400


@dataclass(frozen=True)
class PolicyView:
    """One alert kind's steps as the circle has them (or the defaults, never edited)."""

    kind: str
    steps: list[dict[str, Any]]
    updated_at: datetime | None
    updated_by_id: int | None
    is_default: bool


def _policy_row(circle_id: int, kind: str, *, lock: bool = False) -> EscalationPolicy | None:
    stmt: Any = scoped(EscalationPolicy, circle_id).where(EscalationPolicy.alert_kind == kind)
    if lock:
        stmt = stmt.with_for_update()
    row: EscalationPolicy | None = db.session.scalars(stmt).first()
    return row


def _view(kind: str, row: EscalationPolicy | None) -> PolicyView:
    if row is None:
        return PolicyView(kind, copy.deepcopy(DEFAULT_POLICIES[kind]), None, None, True)
    return PolicyView(kind, copy.deepcopy(row.steps), row.updated_at, row.updated_by_id, False)


def _check_kind(kind: str) -> None:
    if kind not in ALERT_KINDS:
        raise NotFound(f"No escalation policy for {kind!r}.", code="policy_not_found")


def policy_steps(circle_id: int, kind: str) -> list[dict[str, Any]]:
    """A copy of the steps an alert of ``kind`` follows in the circle (defaults if unset)."""
    _check_kind(kind)
    return _view(kind, _policy_row(circle_id, kind)).steps


def list_policies(
    actor: User, *, limit: int = DEFAULT_LIMIT, offset: int = 0
) -> dict[str, Any]:
    """A page of the alert kinds' policies of the circle, in the order of ``ALERT_KINDS``
    (every kind is listed, with the defaults where the circle has no row)."""
    check_page(limit, offset)
    kinds = ALERT_KINDS[offset : offset + limit + 1]
    rows = {}
    if kinds:
        stmt = scoped(EscalationPolicy, actor.circle_id).where(
            EscalationPolicy.alert_kind.in_(kinds)
        )
        rows = {r.alert_kind: r for r in db.session.scalars(stmt)}
    return envelope([_view(kind, rows.get(kind)) for kind in kinds], limit, offset)


def get_policy(actor: User, kind: str) -> PolicyView:
    """One alert kind's policy of the circle; an unknown kind answers 404."""
    _check_kind(kind)
    return _view(kind, _policy_row(actor.circle_id, kind))


_STEP_FIELDS = ("target", "after_seconds", "repeat_every_seconds", "stop_on")


def _seconds(value: Any, minimum: int) -> int | None:
    """``value`` if it is a whole number of seconds in range, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if minimum <= value <= MAX_STEP_SECONDS else None
    return None


def _validate_steps(v: Validator, steps: Any) -> list[dict[str, Any]]:
    if not isinstance(steps, list):
        v.add("steps", "Must be a list of steps.")
        return []
    if not 1 <= len(steps) <= MAX_STEPS:
        v.add("steps", f"Give between 1 and {MAX_STEPS} steps.")
        return []
    clean: list[dict[str, Any]] = []
    previous: int | None = None
    for i, step in enumerate(steps):
        at = f"steps.{i}"
        if not isinstance(step, Mapping):
            v.add(at, "Must be an object.")
            continue
        for key in step:
            if key not in _STEP_FIELDS:
                v.add(f"{at}.{key}", "Unknown field.")
        target = step.get("target")
        v.check(target in STEP_TARGETS, f"{at}.target",
                f"Must be one of: {', '.join(STEP_TARGETS)}.")
        after = _seconds(step.get("after_seconds"), 0)
        if after is None:
            v.add(f"{at}.after_seconds", f"Must be a whole number from 0 to {MAX_STEP_SECONDS}.")
        elif previous is not None and after < previous:
            v.add(f"{at}.after_seconds", "Must not be less than the previous step's.")
        else:
            previous = after
        repeat = step.get("repeat_every_seconds")
        v.check(repeat is None or _seconds(repeat, 1) is not None, f"{at}.repeat_every_seconds",
                f"Must be null or a whole number from 1 to {MAX_STEP_SECONDS}.")
        stop_on = step.get("stop_on")
        v.check(stop_on in STOP_ON, f"{at}.stop_on", f"Must be one of: {', '.join(STOP_ON)}.")
        clean.append({"target": target, "after_seconds": after,
                      "repeat_every_seconds": repeat, "stop_on": stop_on})
    return clean


def replace_policy(actor: User, kind: str, steps: Any, now: datetime) -> PolicyView:
    """Replace one alert kind's steps (admin only); alerts already open keep their copy.

    1 to 10 steps, ``after_seconds`` never decreasing; each bad field is named
    ``steps.<i>.<field>``. An unknown kind answers 404.
    """
    require_admin(actor)
    _check_kind(kind)
    v = Validator()
    clean = _validate_steps(v, steps)
    v.raise_if_any()
    # The circle row serialises concurrent first writes of the same kind.
    db.session.scalars(
        select(Circle.id).where(Circle.id == actor.circle_id).with_for_update()
    ).one()
    row = _policy_row(actor.circle_id, kind, lock=True)
    if row is None:
        row = EscalationPolicy(circle_id=actor.circle_id, alert_kind=kind)
        db.session.add(row)
    row.steps = clean
    row.updated_at = now
    row.updated_by_id = actor.id
    record(actor.circle_id, "circle", actor.circle_id, "escalation_policy.replaced", now,
           actor.id, alert_kind=kind, steps=clean)
    db.session.commit()
    return _view(kind, row)
