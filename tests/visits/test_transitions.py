"""State changes of a visit: assign, unassign, cancel, check-in, check-out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from oncall.core.timeline import TimelineEvent
from oncall.errors import Conflict, Forbidden, NotFound, ValidationFailed
from oncall.extensions import db
from oncall.visits import common, services
from oncall.visits.models import STATES, TRANSITIONS, Visit
from tests import factories as f
from tests.visits.conftest import (
    NOW,
    counts,
    events,
    make_call,
    make_visit,
    on_shift,
    visit_events,
    visit_kinds,
)

LATER = NOW + timedelta(minutes=10)

#: operation -> (the state it leads to, how to run it, the 409 code it answers)
OPERATIONS: dict[str, tuple[str, Any, str]] = {
    "assign": (
        "assigned",
        lambda w, v, other: services.assign_visit(w.dispatcher, v.id, other.id, LATER),
        "visit_not_assignable",
    ),
    "unassign": (
        "unassigned",
        lambda w, v, other: services.assign_visit(w.dispatcher, v.id, None, LATER, "Car broke"),
        "visit_not_assignable",
    ),
    "cancel": (
        "cancelled",
        lambda w, v, other: services.cancel_visit(w.dispatcher, v.id, "Patient went to A&E", LATER),
        "visit_not_cancellable",
    ),
    "check_in": (
        "on_site",
        lambda w, v, other: services.check_in(w.doctor, v.id, LATER),
        "visit_not_checkinable",
    ),
    "check_out": (
        "completed",
        lambda w, v, other: services.check_out(w.doctor, v.id, LATER),
        "visit_not_checkoutable",
    ),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("state", STATES)
def test_every_state_and_operation_follows_the_transition_table(world, state, operation):
    target, run, code = OPERATIONS[operation]
    other = f.make_user(world.circle, "doctor")
    visit = make_visit(world.zone, state, world.doctor)
    allowed = target in TRANSITIONS[state]
    before = counts()
    if state == "unassigned" and operation in ("check_in", "check_out"):
        # No doctor holds an unassigned visit, so for every doctor it is not theirs.
        with pytest.raises(NotFound):
            run(world, visit, other)
        assert counts() == before
    elif allowed:
        out = run(world, visit, other)
        assert out["status"] == target
        assert out["updated_at"] == LATER
        assert len(visit_events(visit.id)) == 1
    else:
        with pytest.raises(Conflict) as exc:
            run(world, visit, other)
        assert exc.value.status == 409
        assert exc.value.code == code
        assert f"{state} -> {target}" in exc.value.fields["status"][0]
        assert counts() == before
        db.session.rollback()
        assert db.session.get(Visit, visit.id).status == state


@pytest.mark.parametrize("target", STATES)
@pytest.mark.parametrize("origin", STATES)
def test_the_one_transition_helper_enforces_the_table(world, origin, target):
    visit = make_visit(world.zone, origin, world.doctor)
    if target in TRANSITIONS[origin]:
        common.move(visit, target, actor=world.admin, now=LATER, kind="visit.test", code="x")
        assert (visit.status, visit.updated_at) == (target, LATER)
        db.session.flush()
        (event,) = events_pending(visit.id)
        assert event.data == {"from_status": origin, "to_status": target}
    else:
        with pytest.raises(Conflict) as exc:
            common.move(visit, target, actor=world.admin, now=LATER, kind="visit.test", code="x")
        assert (exc.value.status, exc.value.code) == (409, "x")
        assert origin in exc.value.message
        assert target in exc.value.message
        assert visit.status == origin
    db.session.rollback()


def events_pending(visit_id: int) -> list[TimelineEvent]:
    """The visit's events in the current (uncommitted) transaction."""
    return list(
        db.session.scalars(
            db.select(TimelineEvent).where(
                TimelineEvent.subject_type == "visit", TimelineEvent.subject_id == visit_id
            )
        )
    )


def test_check_in_to_a_cancelled_visit_is_409(world):
    visit = make_visit(world.zone, "cancelled", world.doctor)
    with pytest.raises(Conflict) as exc:
        services.check_in(world.doctor, visit.id, LATER)
    assert exc.value.code == "visit_not_checkinable"


def test_assign_an_unassigned_visit(world):
    visit = make_visit(world.zone, "unassigned")
    on_shift(world.zone, world.doctor)
    out = services.assign_visit(world.coordinator, visit.id, world.doctor.id, LATER)
    assert (out["status"], out["doctor_id"], out["unassigned_reason"]) == (
        "assigned",
        world.doctor.id,
        None,
    )
    assert out["assigned_at"] == LATER
    (event,) = visit_events(visit.id)
    assert event.kind == "visit.assigned"
    assert event.actor_id == world.coordinator.id
    assert event.data["on_duty"] is True
    assert event.data["from_status"] == "unassigned"


def test_reassign_to_a_doctor_off_duty_is_recorded(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    other = f.make_user(world.circle, "doctor")
    out = services.assign_visit(world.dispatcher, visit.id, other.id, LATER, reason="Closer")
    assert out["doctor_id"] == other.id
    assert out["doctor_name"] == other.name
    (event,) = visit_events(visit.id)
    assert event.kind == "visit.reassigned"
    assert event.data["from_doctor_id"] == world.doctor.id
    assert event.data["doctor_id"] == other.id
    assert event.data["on_duty"] is False
    assert event.data["reason"] == "Closer"


def test_assigning_the_same_doctor_again_changes_nothing(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    out = services.assign_visit(world.dispatcher, visit.id, world.doctor.id, LATER)
    assert not db.session().in_transaction()  # the row lock is released
    assert out["updated_at"] == NOW
    assert events(visit.id) == []


def test_unassign_needs_a_reason_and_records_it(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    before = counts()
    for reason in (None, "", "   "):
        with pytest.raises(ValidationFailed) as exc:
            services.assign_visit(world.dispatcher, visit.id, None, LATER, reason)
        assert list(exc.value.fields) == ["reason"]
    assert counts() == before
    out = services.assign_visit(world.dispatcher, visit.id, None, LATER, "Doctor unwell")
    assert (out["status"], out["doctor_id"]) == ("unassigned", None)
    assert out["unassigned_reason"] == "Doctor unwell"
    assert out["assigned_at"] is None
    (event,) = visit_events(visit.id)
    assert event.kind == "visit.unassigned"
    assert event.data["from_doctor_id"] == world.doctor.id
    assert event.data["reason"] == "Doctor unwell"


def test_assign_refuses_users_who_are_not_active_doctors_of_the_circle(world, other_world):
    visit = make_visit(world.zone, "unassigned")
    retired = f.make_user(world.circle, "doctor", active=False)
    before = counts()
    for candidate in (world.dispatcher.id, other_world.doctor.id, retired.id, 99999, 2**40):
        with pytest.raises(ValidationFailed) as exc:
            services.assign_visit(world.dispatcher, visit.id, candidate, LATER)
        assert list(exc.value.fields) == ["doctor_id"]
    assert counts() == before


def test_cancel_needs_a_reason(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    before = counts()
    for reason in (None, "", "  ", "x" * 2001):
        with pytest.raises(ValidationFailed) as exc:
            services.cancel_visit(world.dispatcher, visit.id, reason, LATER)
        assert list(exc.value.fields) == ["reason"]
    assert counts() == before


def test_cancel_records_when_why_and_who(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    out = services.cancel_visit(world.coordinator, visit.id, "Family took her to hospital", LATER)
    assert out["status"] == "cancelled"
    assert out["cancelled_at"] == LATER
    assert out["cancel_reason"] == "Family took her to hospital"
    (event,) = visit_events(visit.id)
    assert (event.kind, event.actor_id) == ("visit.cancelled", world.coordinator.id)
    assert event.data["reason"] == "Family took her to hospital"


def test_check_in_and_out_store_times_location_and_note(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    out = services.check_in(
        world.doctor, visit.id, LATER, location={"lat": 50.85, "lon": 4.35, "accuracy": 12.5}
    )
    assert out["status"] == "on_site"
    assert out["checked_in_at"] == LATER
    assert out["last_location"] == {"lat": 50.85, "lon": 4.35, "accuracy": 12.5, "at": LATER}
    done = LATER + timedelta(minutes=25)
    out = services.check_out(world.doctor, visit.id, done, outcome_note="Sent to hospital")
    assert out["status"] == "completed"
    assert out["checked_out_at"] == done
    assert out["outcome_note"] == "Sent to hospital"
    assert out["last_location"]["at"] == LATER  # no new position given
    assert visit_kinds(visit.id) == ["visit.checked_in", "visit.checked_out"]
    assert all(e.actor_id == world.doctor.id for e in visit_events(visit.id))


def test_check_out_location_replaces_the_last_one(world):
    visit = make_visit(world.zone, "on_site", world.doctor)
    done = LATER + timedelta(minutes=5)
    out = services.check_out(world.doctor, visit.id, done, location={"lat": -33.9, "lon": 151.2})
    assert out["last_location"] == {"lat": -33.9, "lon": 151.2, "accuracy": None, "at": done}


@pytest.mark.parametrize(
    ("location", "field"),
    [
        ({"lat": 90.5, "lon": 4}, "location.lat"),
        ({"lat": -91, "lon": 4}, "location.lat"),
        ({"lat": 50, "lon": 180.1}, "location.lon"),
        ({"lat": 50, "lon": 4, "accuracy": -1}, "location.accuracy"),
        ({"lon": 4}, "location.lat"),
        ({"lat": 50, "lon": "east"}, "location.lon"),
        ({"lat": 50, "lon": 4, "alt": 3}, "location.alt"),
    ],
)
def test_check_in_refuses_a_bad_location(world, location, field):
    visit = make_visit(world.zone, "assigned", world.doctor)
    before = counts()
    with pytest.raises(ValidationFailed) as exc:
        services.check_in(world.doctor, visit.id, LATER, location=location)
    assert field in exc.value.fields
    assert counts() == before
    db.session.rollback()
    assert db.session.get(Visit, visit.id).status == "assigned"


def test_another_doctor_cannot_act_on_the_visit(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    intruder = f.make_user(world.circle, "doctor")
    with pytest.raises(NotFound):
        services.check_in(intruder, visit.id, LATER)
    on_site = make_visit(world.zone, "on_site", world.doctor)
    with pytest.raises(NotFound):
        services.check_out(intruder, on_site.id, LATER)
    with pytest.raises(NotFound):
        services.get_visit(intruder, visit.id, LATER)
    with pytest.raises(NotFound):
        services.visit_timeline(intruder, visit.id)


def test_only_doctors_check_in_and_only_managers_assign(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    with pytest.raises(Forbidden):
        services.check_in(world.dispatcher, visit.id, LATER)
    with pytest.raises(Forbidden):
        services.assign_visit(world.doctor, visit.id, None, LATER, "no")
    with pytest.raises(Forbidden):
        services.cancel_visit(world.doctor, visit.id, "no", LATER)


def test_other_circle_visit_is_not_found(world, other_world):
    visit = make_visit(other_world.zone, "assigned", other_world.doctor)
    with pytest.raises(NotFound):
        services.assign_visit(world.dispatcher, visit.id, world.doctor.id, LATER)
    with pytest.raises(NotFound):
        services.cancel_visit(world.dispatcher, visit.id, "x", LATER)
    with pytest.raises(NotFound):
        services.get_visit(world.admin, visit.id, LATER)
    with pytest.raises(NotFound):
        services.check_in(world.doctor, visit.id, LATER)


def test_timeline_lists_every_change_in_order(world):
    on_shift(world.zone, world.doctor)
    call = make_call(world.circle)
    created = services.create_visit(
        world.dispatcher, {"call_id": call.id, "zone_id": world.zone.id}, NOW
    )
    other = f.make_user(world.circle, "doctor")
    vid = created["id"]
    services.assign_visit(world.dispatcher, vid, other.id, NOW + timedelta(minutes=1))
    services.assign_visit(world.dispatcher, vid, None, NOW + timedelta(minutes=2), "Swap")
    services.assign_visit(world.dispatcher, vid, world.doctor.id, NOW + timedelta(minutes=3))
    services.check_in(world.doctor, vid, NOW + timedelta(minutes=20))
    services.check_out(world.doctor, vid, NOW + timedelta(minutes=40))
    timeline = services.visit_timeline(world.dispatcher, vid)
    assert [e["kind"] for e in timeline] == [
        "visit.created",
        "visit.assigned",
        "deadline.arrival.armed",
        "visit.reassigned",
        "deadline.arrival.armed",
        "visit.unassigned",
        "deadline.arrival.cancelled",
        "visit.assigned",
        "deadline.arrival.armed",
        "visit.checked_in",
        "deadline.arrival.met",
        "deadline.departure.armed",
        "visit.checked_out",
        "deadline.departure.met",
    ]
    assert [e["actor_id"] for e in timeline] == [world.dispatcher.id] * 9 + [world.doctor.id] * 5
    assert timeline == sorted(timeline, key=lambda e: (e["at"], e["id"]))
