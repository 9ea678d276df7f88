"""The doctor at the patient's door: check-in, extension, check-out.

Each function is one transaction, like the other visit use cases: the visit's
state, its deadlines, any alert resolved or opened, the timeline and the outbox
rows are committed together, and the outbox rows are handed to a worker before
the commit (:func:`oncall.notify.outbox.hand_off_new`).

A check-in or check-out may carry the doctor's code. The check-in code and no
code at all are the same; a wrong code is refused (422 on ``code``) and nothing
is written; the duress code does everything the check-in code does, answers the
same, and opens a silent ``duress`` alert besides. The doctor's own views never
show that alert (:func:`oncall.visits.queries.visible_events`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from oncall.accounts.models import User
from oncall.errors import Conflict, Validator
from oncall.extensions import db
from oncall.notify import outbox
from oncall.visits.checks import (
    DEFAULT_EXTEND_MINUTES,
    EXPECTED_MINUTES,
    EXTEND_MINUTES,
    MAX_NOTE,
    check_location,
    check_minutes,
    check_text,
)
from oncall.visits.common import (
    atomic,
    circle_settings,
    load_visit,
    move,
    require_role,
    store_location,
)
from oncall.visits.present import present_one
from oncall.visits.safety import (
    CodeMatch,
    arm_departure,
    meet,
    open_duress,
    push_departure,
    verify_code,
)

logger = logging.getLogger(__name__)


def _finish(out: dict[str, Any]) -> dict[str, Any]:
    """Hand this transaction's new messages to a worker, commit, answer ``out``."""
    outbox.hand_off_new()
    db.session.commit()
    return out


@atomic
def check_in(
    actor: User,
    visit_id: int,
    now: datetime,
    location: Mapping[str, Any] | None = None,
    *,
    code: str | None = None,
    expected_minutes: int | None = None,
) -> dict[str, Any]:
    """The visit's own doctor arrives: ``assigned`` -> ``on_site``.

    Meets the arrival deadline (resolving the alert of a missed one) and arms the
    departure deadline ``expected_minutes`` from now (default: the circle's
    ``visit_minutes``), with the doctor's reminder before it. Another doctor's
    visit is 404; any other state is 409 ``visit_not_checkinable``.
    """
    require_role(actor, ("doctor",))
    v = Validator()
    place = check_location(v, location)
    minutes = check_minutes(v, "expected_minutes", expected_minutes, EXPECTED_MINUTES)
    match = verify_code(v, actor, code, now)
    v.raise_if_any()

    circle = circle_settings(actor.circle_id)
    visit = load_visit(actor, visit_id, lock=True)
    move(
        visit,
        "on_site",
        actor=actor,
        now=now,
        kind="visit.checked_in",
        code="visit_not_checkinable",
        location=place,
    )
    visit.checked_in_at = now
    store_location(visit, place, now)
    meet(visit, "arrival", actor, "doctor checked in", now)
    arm_departure(visit, circle, minutes or circle.visit_minutes, now, actor)
    if match is CodeMatch.DURESS:
        open_duress(visit, place, now)

    out = _finish(present_one(visit))
    logger.info("visit %s: doctor %s checked in", visit.id, actor.id)
    return out


@atomic
def extend_visit(
    actor: User, visit_id: int, now: datetime, minutes: int | None = None
) -> dict[str, Any]:
    """The visit's own doctor needs longer: the departure deadline moves ``minutes`` later.

    Default 15 minutes; from now when the deadline has already passed. An alert
    opened by a missed departure is resolved: the doctor has answered. Only an
    ``on_site`` visit (else 409 ``visit_not_extendable``); another doctor's is 404.
    """
    require_role(actor, ("doctor",))
    v = Validator()
    if minutes is None:
        minutes = DEFAULT_EXTEND_MINUTES
    else:
        minutes = check_minutes(v, "minutes", minutes, EXTEND_MINUTES)
    v.raise_if_any()
    assert minutes is not None

    circle = circle_settings(actor.circle_id)
    visit = load_visit(actor, visit_id, lock=True)
    if visit.status != "on_site":
        raise Conflict(
            f"Visit {visit.id} is {visit.status}; only a visit on site can be extended.",
            code="visit_not_extendable",
            fields={"status": [f"{visit.status}: the doctor is not on site"]},
        )
    push_departure(visit, circle, minutes, actor, now)
    visit.updated_at = now

    out = _finish(present_one(visit))
    logger.info("visit %s: doctor %s extended it by %s min", visit.id, actor.id, minutes)
    return out


@atomic
def check_out(
    actor: User,
    visit_id: int,
    now: datetime,
    outcome_note: str | None = None,
    location: Mapping[str, Any] | None = None,
    *,
    code: str | None = None,
) -> dict[str, Any]:
    """The visit's own doctor leaves: ``on_site`` -> ``completed``.

    Meets the departure deadline (resolving the alert of a missed one). Another
    doctor's visit is 404; any other state is 409 ``visit_not_checkoutable``.
    """
    require_role(actor, ("doctor",))
    v = Validator()
    check_text(v, "note", outcome_note, MAX_NOTE)
    place = check_location(v, location)
    match = verify_code(v, actor, code, now)
    v.raise_if_any()

    visit = load_visit(actor, visit_id, lock=True)
    move(
        visit,
        "completed",
        actor=actor,
        now=now,
        kind="visit.checked_out",
        code="visit_not_checkoutable",
        location=place,
        with_note=outcome_note is not None,
    )
    visit.checked_out_at = now
    visit.outcome_note = outcome_note
    store_location(visit, place, now)
    meet(visit, "departure", actor, "doctor checked out", now)
    if match is CodeMatch.DURESS:
        open_duress(visit, place, now)

    out = _finish(present_one(visit))
    logger.info("visit %s: doctor %s checked out", visit.id, actor.id)
    return out
