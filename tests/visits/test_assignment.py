"""Creating a visit: copy from the call, assignment to the doctor on duty, serialisation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from oncall.calls.models import Call
from oncall.errors import Conflict, Forbidden, ValidationFailed
from oncall.extensions import db
from oncall.visits import services
from oncall.visits.models import Visit
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


def _create(world: Any, call: Call | None = None, **data: Any) -> dict[str, Any]:
    call = call or make_call(world.circle)
    payload = {"call_id": call.id, "zone_id": world.zone.id} | data
    return services.create_visit(world.dispatcher, payload, NOW)


def test_single_doctor_on_duty_gets_the_visit(world):
    on_shift(world.zone, world.doctor)
    out = _create(world)
    assert out["status"] == "assigned"
    assert out["doctor_id"] == world.doctor.id
    assert out["doctor_name"] == world.doctor.name
    assert out["unassigned_reason"] is None
    assert out["assigned_at"] == NOW
    assert visit_kinds(out["id"]) == ["visit.created", "visit.assigned"]
    assigned = visit_events(out["id"])[1]
    assert assigned.actor_id == world.dispatcher.id
    assert assigned.data["doctor_id"] == world.doctor.id
    assert assigned.data["on_duty"] is True


def test_several_on_duty_fewest_open_visits_wins(world, doctors):
    busy, free = doctors[0], doctors[1]
    on_shift(world.zone, busy, started=timedelta(hours=3))  # earlier shift, but busier
    on_shift(world.zone, free, started=timedelta(hours=1))
    make_visit(world.zone, "assigned", busy)
    make_visit(world.zone, "completed", free)  # closed visits do not count
    make_visit(world.zone, "cancelled", free)
    assert _create(world)["doctor_id"] == free.id


def test_on_site_visits_count_as_open(world, doctors):
    a, b = doctors[0], doctors[1]
    on_shift(world.zone, a, started=timedelta(hours=3))
    on_shift(world.zone, b, started=timedelta(hours=1))
    make_visit(world.zone, "on_site", a)
    assert _create(world)["doctor_id"] == b.id


def test_equal_load_earliest_shift_start_wins(world, doctors):
    late, early = doctors[0], doctors[1]
    on_shift(world.zone, late, started=timedelta(hours=1))
    on_shift(world.zone, early, started=timedelta(hours=2))
    assert _create(world)["doctor_id"] == early.id


def test_equal_load_and_start_lowest_id_wins(world, doctors):
    second, first = doctors[1], doctors[0]
    on_shift(world.zone, second)
    on_shift(world.zone, first)
    assert _create(world)["doctor_id"] == first.id


def test_nobody_on_duty_leaves_the_visit_unassigned_with_a_reason(world, doctors):
    other_zone = f.make_zone(world.circle, "Ouest")
    on_shift(other_zone, doctors[0])  # on duty, but elsewhere
    f.make_shift(world.zone, doctors[1], NOW - timedelta(hours=9), NOW)  # ended at NOW
    f.make_shift(world.zone, doctors[2], NOW + timedelta(minutes=1), NOW + timedelta(hours=8))
    out = _create(world)
    assert out["status"] == "unassigned"
    assert out["doctor_id"] is None
    assert out["unassigned_reason"] == "no_doctor_on_duty"
    evs = visit_events(out["id"])
    assert [e.kind for e in evs] == ["visit.created", "visit.unassigned"]
    assert evs[1].data["reason"] == "no_doctor_on_duty"
    assert "Nobody is on duty" in evs[1].data["message"]


def test_inactive_doctor_on_duty_is_ignored(world, doctors):
    gone, present = doctors[0], doctors[1]
    on_shift(world.zone, gone, started=timedelta(hours=3))
    on_shift(world.zone, present, started=timedelta(hours=1))
    gone.active = False
    db.session.commit()
    assert _create(world)["doctor_id"] == present.id


def test_only_inactive_doctor_on_duty_means_unassigned(world):
    on_shift(world.zone, world.doctor)
    world.doctor.active = False
    db.session.commit()
    out = _create(world)
    assert (out["status"], out["unassigned_reason"]) == ("unassigned", "no_doctor_on_duty")


def test_patient_address_and_preparation_are_copied_from_the_call(world):
    call = make_call(world.circle)
    out = _create(world, call)
    assert out["patient"]["name"] == "Jeanne Dupont"
    assert out["patient"]["age"] == 84
    assert out["address"]["street"] == "Rue Haute"
    assert out["address"]["dwelling"] == "flat"
    assert out["preparation"]["caller_relation"] == "family"
    assert out["preparation"]["dogs_secured"] is True
    assert out["reason"] == "Fever and confusion"
    assert out["identity_verified"] is True
    assert out["call_id"] == call.id


def test_given_fields_override_the_copy(world):
    out = _create(
        world,
        patient={"name": "Jean Dupont"},
        address={"floor": "4", "access_notes": "Code 1234"},
        preparation={"outside_light_on": True},
        reason="Fall at home",
        identity_verified=False,
    )
    assert out["patient"]["name"] == "Jean Dupont"
    assert out["patient"]["age"] == 84  # not given: still the call's
    assert out["address"]["floor"] == "4"
    assert out["address"]["street"] == "Rue Haute"
    assert out["address"]["access_notes"] == "Code 1234"
    assert out["preparation"]["outside_light_on"] is True
    assert out["reason"] == "Fall at home"
    assert out["identity_verified"] is False
    visit = db.session.get(Visit, out["id"])
    assert visit.address_floor == "4"
    assert visit.created_by_id == world.dispatcher.id


def test_call_outcome_set_to_home_visit_with_an_event(world):
    call = make_call(world.circle)
    out = _create(world, call)
    db.session.rollback()
    assert db.session.get(Call, call.id).outcome == "home_visit"
    call_events = events(call.id, "call")
    assert [e.kind for e in call_events] == ["call.outcome_set"]
    assert call_events[0].data == {"outcome": "home_visit", "visit_id": out["id"]}
    assert call_events[0].actor_id == world.dispatcher.id


def test_existing_call_outcome_is_kept(world):
    call = make_call(world.circle, outcome="transferred_to_doctor")
    _create(world, call)
    db.session.rollback()
    assert db.session.get(Call, call.id).outcome == "transferred_to_doctor"
    assert events(call.id, "call") == []


def test_call_with_an_open_visit_is_409(world):
    call = make_call(world.circle)
    _create(world, call)
    before = counts()
    with pytest.raises(Conflict) as exc:
        _create(world, call)
    assert exc.value.code == "call_has_open_visit"
    assert counts() == before


def test_call_whose_visit_was_cancelled_may_get_a_new_one(world):
    call = make_call(world.circle)
    make_visit(world.zone, "cancelled", world.doctor, call=call)
    assert _create(world, call)["call_id"] == call.id


def test_eta_minutes_sets_arrive_by(world):
    assert _create(world, eta_minutes=30)["arrive_by"] == NOW + timedelta(minutes=30)


def test_naive_arrive_by_is_circle_local_time(world):
    # 22:15 in Brussels in January is 21:15 UTC.
    out = _create(world, arrive_by=NOW.replace(tzinfo=None, hour=22, minute=15))
    assert out["arrive_by"] == NOW.replace(hour=21, minute=15)


def test_aware_arrive_by_is_kept_and_absent_stays_null(world):
    out = _create(world, arrive_by=NOW + timedelta(minutes=45))
    assert out["arrive_by"] == NOW + timedelta(minutes=45)
    assert _create(world)["arrive_by"] is None


def test_service_refuses_roles_that_may_not_create(world):
    call = make_call(world.circle)
    for actor in (world.doctor, world.coordinator):
        with pytest.raises(Forbidden):
            services.create_visit(actor, {"call_id": call.id, "zone_id": world.zone.id}, NOW)


def test_service_gathers_every_field_error(world):
    before = counts()
    with pytest.raises(ValidationFailed) as exc:
        services.create_visit(
            world.dispatcher,
            {
                "call_id": 987654,
                "zone_id": 987654,
                "eta_minutes": 0,
                "patient": {"age": 400, "colour": "blue"},
                "address": {"dwelling": "castle"},
            },
            NOW,
        )
    assert set(exc.value.fields) == {
        "call_id",
        "zone_id",
        "eta_minutes",
        "patient.age",
        "patient.colour",
        "address.dwelling",
    }
    assert counts() == before
