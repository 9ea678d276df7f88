"""The escalation engine: the one place where time moves deadlines and alerts.

:func:`process_due` is called by everything that may notice that time has
passed: the Celery task woken at a deadline (fast path), the scheduler's sweep
every few seconds (the guarantee), the embedded sweeper. In one transaction it

1. claims armed deadlines that are due (``FOR UPDATE SKIP LOCKED``), marks them
   missed and opens an alert for each, firing the steps due at once;
2. claims departure reminders that are due and writes them to the outbox;
3. claims open alerts whose ``next_step_at`` passed and fires their due steps.

A step fires by writing an :class:`~oncall.alerts.models.EscalationClaim` whose
keys are unique per (alert, level) and per (alert, step, repeat), the outbox
rows for its recipients, and timeline and stream events, all in that same
transaction. Rows are re-read under their lock, so a duplicated task or a racing
sweep finds nothing left to do; should two processes ever reach the same step,
the unique keys make one of them roll back.

Step timing is measured from the alert's ``due_at`` (the deadline's time, or the
press of the panic button), so a late sweep never shifts the whole chain. A step
whose repeats were missed while nothing ran fires once, not once per missed
repeat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from oncall.alerts import briefing as briefings
from oncall.alerts import messages
from oncall.alerts.models import MISSED_KIND, Alert, Deadline, EscalationClaim
from oncall.alerts.recipients import Directory, Recipient
from oncall.core import dispatch, ids
from oncall.core.timeline import record
from oncall.extensions import db
from oncall.notify import outbox
from oncall.notify.stream import publish
from oncall.visits.models import Visit

logger = logging.getLogger(__name__)


@dataclass
class Pass:
    """What one engine transaction did."""

    missed: int = 0
    reminded: int = 0
    alerts_stepped: int = 0
    steps_fired: int = 0
    outbox_ids: list[int] = field(default_factory=list)
    #: True when a query hit its limit: more may be due.
    full: bool = False


# --------------------------------------------------------------------------- steps


def _origin(alert: Alert, step: dict[str, Any]) -> datetime:
    return alert.due_at + timedelta(seconds=int(step.get("after_seconds") or 0))


def step_due(alert: Alert, index: int) -> datetime | None:
    """When step ``index`` of ``alert`` fires next; None when it is done or stopped."""
    if alert.status == "resolved":
        return None
    step = alert.policy[index]
    if step.get("stop_on") == "acknowledge" and alert.status == "acknowledged":
        return None
    count = alert.progress[index]
    first = _origin(alert, step)
    if count == 0:
        if step.get("target") == "police" and alert.escalated_at is not None:
            return min(first, alert.escalated_at)
        return first
    repeat = step.get("repeat_every_seconds")
    if not repeat:
        return None
    return first + timedelta(seconds=int(repeat) * count)


def next_step_at(alert: Alert) -> datetime | None:
    """The earliest time any step of ``alert`` fires next."""
    times = [t for i in range(len(alert.policy)) if (t := step_due(alert, i)) is not None]
    return min(times) if times else None


def _schedule(alert: Alert) -> None:
    alert.next_step_at = next_step_at(alert)
    if alert.next_step_at is not None:
        dispatch.wake_at(alert.next_step_at)


def fire_due_steps(
    alert: Alert, now: datetime, directory: Directory, *, announce: bool = True
) -> int:
    """Fire every step of ``alert`` that is due at ``now``, in time order; reschedule it.

    ``announce`` puts each step on the consoles' stream (an alert that is opening
    announces itself once, with its level, instead)."""
    due = sorted(
        (t, i)
        for i in range(len(alert.policy))
        if (t := step_due(alert, i)) is not None and t <= now
    )
    for when, index in due:
        _fire(alert, index, when, now, directory, announce)
    _schedule(alert)
    if due:
        alert.updated_at = now
    return len(due)


def _fire(
    alert: Alert,
    index: int,
    due_at: datetime,
    now: datetime,
    directory: Directory,
    announce: bool,
) -> None:
    step = alert.policy[index]
    target = str(step.get("target"))
    repeat_no = alert.progress[index]
    # Repeats missed while nothing ran collapse into this one firing.
    skipped = 0
    repeat = step.get("repeat_every_seconds")
    if repeat and repeat_no > 0:
        behind = int((now - due_at).total_seconds() // int(repeat))
        skipped = max(0, behind)
    progress = list(alert.progress)
    progress[index] = repeat_no + 1 + skipped
    alert.progress = progress
    alert.level += 1
    claim = EscalationClaim(
        circle_id=alert.circle_id,
        alert_id=alert.id,
        level=alert.level,
        step_index=index,
        repeat_no=repeat_no,
        target=target,
        due_at=due_at,
        fired_at=now,
        messages=0,
    )
    # The unique keys speak at the flush, should two processes ever race.
    ids.add_with_id(claim)

    if target == "doctor" and alert.kind == "duress":
        record(alert.circle_id, "alert", alert.id, "alert.step_skipped", now,
               level=alert.level, step=index, target=target, reason="duress_is_silent")
        return
    people = _targets(alert, target, directory)
    # The doctor's own reminder needs no briefing; staff and police messages do.
    brief = {} if target == "doctor" else briefings.build(alert, get=directory.row)
    count = 0
    for person in people:
        count += _notify(alert, claim, step, person, brief, now, directory)
    claim.messages = count
    record(
        alert.circle_id, "alert", alert.id, "alert.step_fired", now,
        level=alert.level, step=index, repeat=repeat_no, target=target,
        due_at=due_at, lag_ms=int((now - due_at).total_seconds() * 1000),
        recipients=[{"type": p.type, "id": p.id, "name": p.name} for p in people],
        messages=count, skipped_repeats=skipped,
    )
    if not people or count == 0:
        record(alert.circle_id, "alert", alert.id, "alert.no_recipient", now,
               level=alert.level, target=target)
        logger.warning("alert %s step %s (%s): nobody could be reached", alert.id, index, target)
    if announce:
        publish(alert.circle_id, "alert.step", "alert", alert.id, now,
                level=alert.level, target=target, messages=count)


def _targets(alert: Alert, target: str, directory: Directory) -> list[Recipient]:
    if target == "doctor":
        person = directory.user(alert.doctor_id) if alert.doctor_id else None
        return [person] if person else []
    if target == "coordinator":
        return directory.coordinators(alert.circle_id)
    if target == "police":
        return directory.police(alert.circle_id, alert.zone_id)
    return []


def _notify(
    alert: Alert,
    claim: EscalationClaim,
    step: dict[str, Any],
    person: Recipient,
    brief: dict[str, Any],
    now: datetime,
    directory: Directory,
) -> int:
    lang = person.language
    if claim.target == "doctor":
        what = messages.text("arrival" if alert.kind == "missed_arrival" else "departure", lang)
        first = messages.text("doctor_missed", lang, what=what, visit=alert.visit_id)
        detail: list[str] = []
        payload_brief: dict[str, Any] = {"visit": {"id": alert.visit_id}}
    else:
        doctor = (brief.get("doctor") or {}).get("name") or "?"
        first = messages.text(
            "alert", lang, id=alert.id, kind=messages.kind_label(alert.kind, lang),
            doctor=doctor, where=messages.where(brief),
        )
        if claim.repeat_no:
            first = f"{messages.text('repeat', lang, n=claim.repeat_no)}: {first}"
        detail = briefings.summary_lines(
            briefings.build(alert, person.contact, get=directory.row)
            if person.contact else brief
        )
        payload_brief = brief
    subject = first[:200]
    body = "\n".join([first, *detail])
    payload = {
        "type": "alert.step",
        "alert": {
            "id": alert.id, "kind": alert.kind, "status": alert.status,
            "level": claim.level, "opened_at": alert.opened_at.isoformat(),
            "due_at": alert.due_at.isoformat(),
        },
        "step": {
            "index": claim.step_index, "target": claim.target, "repeat": claim.repeat_no,
            "due_at": claim.due_at.isoformat(),
        },
        "recipient": {"type": person.type, "id": person.id},
        "briefing": payload_brief,
    }
    for address in person.addresses:
        outbox.add(
            circle_id=alert.circle_id, purpose="alert.step", alert_id=alert.id,
            claim_id=claim.id, stop_on=step.get("stop_on"),
            recipient_type=person.type, recipient_id=person.id,
            channel=address.channel, address=address.address, channel_id=address.channel_id,
            subject=subject, body=body if address.channel != "sms" else first, payload=payload,
            now=now,
        )
    return len(person.addresses)


# --------------------------------------------------------------------------- opening


def open_alert(
    *,
    circle_id: int,
    kind: str,
    now: datetime,
    due_at: datetime | None = None,
    visit: Visit | None = None,
    doctor_id: int | None = None,
    deadline: Deadline | None = None,
    location: dict[str, Any] | None = None,
    located_at: datetime | None = None,
    actor_id: int | None = None,
    directory: Directory | None = None,
) -> Alert:
    """Open an alert with the circle's current policy frozen into it; fire what is due now.

    ``location`` is where the doctor was (``{lat, lon, accuracy}``), seen at
    ``located_at`` (default ``now``).
    """
    directory = directory or Directory()
    steps = directory.policy(circle_id, kind)
    alert = Alert(
        circle_id=circle_id,
        kind=kind,
        status="open",
        visit_id=visit.id if visit else None,
        doctor_id=doctor_id if doctor_id is not None else (visit.doctor_id if visit else None),
        zone_id=visit.zone_id if visit else None,
        deadline_id=deadline.id if deadline else None,
        opened_at=now,
        due_at=due_at or now,
        updated_at=now,
        policy=steps,
        progress=[0] * len(steps),
        level=0,
    )
    if location:
        alert.lat = location.get("lat")
        alert.lon = location.get("lon")
        alert.accuracy_m = location.get("accuracy")
        alert.located_at = located_at or now
    ids.add_with_id(alert)
    record(circle_id, "alert", alert.id, "alert.opened", now, actor_id,
           alert_kind=kind, visit_id=alert.visit_id, doctor_id=alert.doctor_id,
           deadline_id=alert.deadline_id, due_at=alert.due_at, policy=steps)
    if alert.visit_id is not None and deadline is None:
        record(circle_id, "visit", alert.visit_id, "alert.opened", now, actor_id,
               alert_id=alert.id, alert_kind=kind)
    fire_due_steps(alert, now, directory, announce=False)
    publish(circle_id, "alert.opened", "alert", alert.id, now, alert_kind=kind,
            visit_id=alert.visit_id, doctor_id=alert.doctor_id, level=alert.level)
    return alert


# --------------------------------------------------------------------------- the pass


def _claim(stmt: Any) -> Any:
    if db.engine.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return db.session.scalars(stmt.execution_options(populate_existing=True))


def _miss(deadline: Deadline, now: datetime, directory: Directory) -> int:
    deadline.state = "missed"
    deadline.closed_at = now
    deadline.remind_at = None
    visit = directory.row(Visit, deadline.visit_id)
    alert = open_alert(
        circle_id=deadline.circle_id, kind=MISSED_KIND[deadline.kind], now=now,
        due_at=deadline.due_at, visit=visit, doctor_id=deadline.doctor_id,
        deadline=deadline, directory=directory,
    )
    deadline.alert_id = alert.id
    record(deadline.circle_id, "visit", deadline.visit_id, f"deadline.{deadline.kind}.missed",
           now, deadline_id=deadline.id, due_at=deadline.due_at, alert_id=alert.id)
    return alert.level


def _remind(deadline: Deadline, now: datetime, directory: Directory) -> None:
    deadline.reminded_at = now
    deadline.remind_at = None
    person = directory.user(deadline.doctor_id) if deadline.doctor_id else None
    record(deadline.circle_id, "visit", deadline.visit_id, "deadline.departure.reminded", now,
           deadline_id=deadline.id, due_at=deadline.due_at, reached=bool(person))
    if person is None:
        return
    local = deadline.due_at.strftime("%H:%M UTC")
    text = messages.text("reminder", person.language, visit=deadline.visit_id, due=local)
    payload = {
        "type": "deadline.reminder",
        "deadline": {"id": deadline.id, "kind": deadline.kind, "visit_id": deadline.visit_id,
                     "due_at": deadline.due_at.isoformat()},
        "recipient": {"type": person.type, "id": person.id},
    }
    for address in person.addresses:
        outbox.add(
            circle_id=deadline.circle_id, purpose="deadline.reminder", deadline_id=deadline.id,
            stop_on=None, recipient_type=person.type, recipient_id=person.id,
            channel=address.channel, address=address.address, channel_id=address.channel_id,
            subject=text[:200], body=text, payload=payload, now=now,
        )


def process_due(now: datetime, *, limit: int = 200) -> Pass:
    """Move every due deadline, reminder and alert step one step, in one transaction.

    Claims at most ``limit`` rows of each kind; ``Pass.full`` says more may be
    due. Commits; the caller delivers ``Pass.outbox_ids`` (or leaves them to the relay).
    """
    result = Pass()
    directory = Directory()
    try:
        with db.session.no_autoflush, ids.pooled():
            _pass(now, limit, result, directory)
            ids.flush_queued()
            result.outbox_ids = outbox.take_new()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    if result.missed or result.steps_fired or result.reminded:
        logger.info(
            "engine: %s missed, %s reminded, %s steps fired on %s alerts, %s messages",
            result.missed, result.reminded, result.steps_fired, result.alerts_stepped,
            len(result.outbox_ids),
        )
    return result


def _preload_visits(deadlines: list[Deadline], directory: Directory) -> None:
    """One query for the visits of a batch, held by the pass's directory."""
    wanted = {d.visit_id for d in deadlines}
    if wanted:
        directory.keep(list(db.session.scalars(select(Visit).where(Visit.id.in_(wanted)))))


def _pass(now: datetime, limit: int, result: Pass, directory: Directory) -> None:
    """The three claims of one pass; the session is flushed between them, so that a
    later claim (which re-reads rows under lock) sees what an earlier one changed."""
    deadlines = list(_claim(
        select(Deadline)
        .where(Deadline.state == "armed", Deadline.due_at <= now)
        .order_by(Deadline.due_at)
        .limit(limit)
    ))
    _preload_visits(deadlines, directory)
    for deadline in deadlines:
        result.steps_fired += _miss(deadline, now, directory)
    result.missed = len(deadlines)
    db.session.flush()

    reminders = list(_claim(
        select(Deadline)
        .where(Deadline.state == "armed", Deadline.remind_at.is_not(None),
               Deadline.remind_at <= now)
        .order_by(Deadline.remind_at)
        .limit(limit)
    ))
    for deadline in reminders:
        _remind(deadline, now, directory)
    result.reminded = len(reminders)
    db.session.flush()

    alerts = list(_claim(
        select(Alert)
        .where(Alert.status != "resolved", Alert.next_step_at.is_not(None),
               Alert.next_step_at <= now)
        .order_by(Alert.next_step_at)
        .limit(limit)
    ))
    for alert in alerts:
        result.steps_fired += fire_due_steps(alert, now, directory)
    result.alerts_stepped = len(alerts)
    result.full = limit in (len(deadlines), len(reminders), len(alerts))
