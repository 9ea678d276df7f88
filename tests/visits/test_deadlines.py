"""A visit's deadlines follow its life: armed on assignment and check-in, met, moved, cancelled.

Service-level tests use explicit instants (``NOW``); the engine is driven by hand
with :func:`oncall.alerts.engine.process_due` where a deadline must be missed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import schemathesis
from sqlalchemy import func, select

from oncall.alerts import lifecycle
from oncall.alerts.engine import process_due
from oncall.alerts.models import Alert, Deadline
from oncall.core import dispatch
from oncall.errors import Conflict, Forbidden, NotFound, ValidationFailed
from oncall.extensions import db
from oncall.visits import common, services
from oncall.visits.models import Visit
from tests import factories as f
from tests.visits.conftest import NOW, events, make_call, make_visit, on_shift

API = "/api/v1"
LATER = NOW + timedelta(minutes=3)


def _deadline(visit_id: int, kind: str) -> Deadline | None:
    db.session.rollback()
    return db.session.scalars(
        select(Deadline).where(Deadline.visit_id == visit_id, Deadline.kind == kind)
    ).first()


def _alerts() -> list[Alert]:
    db.session.rollback()
    return list(db.session.scalars(select(Alert).order_by(Alert.id)))


def _create(world: Any, **data: Any) -> dict[str, Any]:
    call = make_call(world.circle)
    return services.create_visit(
        world.dispatcher, {"call_id": call.id, "zone_id": world.zone.id, **data}, NOW
    )


def _settings(world: Any, **values: Any) -> None:
    for key, value in values.items():
        setattr(world.circle, key, value)
    db.session.commit()


def _checked_in(world: Any, at: Any = LATER, **kw: Any) -> dict[str, Any]:
    on_shift(world.zone, world.doctor)
    created = _create(world)
    return services.check_in(world.doctor, created["id"], at, **kw)


# --------------------------------------------------------------------------- arrival


def test_an_assigned_visit_gets_an_arrival_deadline_from_the_circle(app, world):
    on_shift(world.zone, world.doctor)
    out = _create(world)
    due = NOW + timedelta(minutes=world.circle.arrival_minutes)
    row = _deadline(out["id"], "arrival")
    assert row is not None
    assert (row.state, row.due_at, row.doctor_id) == ("armed", due, world.doctor.id)
    assert out["arrive_by"] == due
    assert db.session.get(Visit, out["id"]).arrive_by == due
    assert out["deadlines"] == {"arrival": {"due_at": due, "state": "armed"}, "departure": None}
    assert out["leave_by"] is None
    assert due in dispatch.sender_of(app).wakes  # handed to the fast path


def test_the_dispatchers_estimate_is_the_arrival_deadline(world):
    on_shift(world.zone, world.doctor)
    out = _create(world, eta_minutes=20)
    assert _deadline(out["id"], "arrival").due_at == NOW + timedelta(minutes=20)
    _settings(world, arrival_minutes=30)
    out = _create(world)
    assert _deadline(out["id"], "arrival").due_at == NOW + timedelta(minutes=30)
    assert out["arrive_by"] == NOW + timedelta(minutes=30)


def test_an_unassigned_visit_has_no_deadline_until_assigned(world):
    out = _create(world, eta_minutes=20)
    assert out["status"] == "unassigned"
    assert out["deadlines"] == {"arrival": None, "departure": None}
    assert db.session.scalar(select(func.count()).select_from(Deadline)) == 0

    assigned = services.assign_visit(world.dispatcher, out["id"], world.doctor.id, LATER)
    due = LATER + timedelta(minutes=world.circle.arrival_minutes)
    assert assigned["deadlines"]["arrival"] == {"due_at": due, "state": "armed"}
    assert assigned["arrive_by"] == due


def test_assigning_with_an_estimate_arms_it(world):
    visit = make_visit(world.zone, "unassigned")
    estimate = NOW + timedelta(minutes=50)
    out = services.assign_visit(
        world.dispatcher, visit.id, world.doctor.id, LATER, arrive_by=estimate
    )
    assert out["arrive_by"] == estimate
    assert _deadline(visit.id, "arrival").due_at == estimate


def test_unassigning_cancels_the_arrival_and_reassigning_arms_it_for_the_new_doctor(world):
    on_shift(world.zone, world.doctor)
    out = _create(world)
    services.assign_visit(world.dispatcher, out["id"], None, LATER, "Car broke down")
    row = _deadline(out["id"], "arrival")
    assert (row.state, row.closed_at) == ("cancelled", LATER)

    other = f.make_user(world.circle, "doctor")
    later = LATER + timedelta(minutes=2)
    out = services.assign_visit(world.dispatcher, out["id"], other.id, later)
    row = _deadline(out["id"], "arrival")
    due = later + timedelta(minutes=world.circle.arrival_minutes)
    assert (row.state, row.due_at, row.doctor_id) == ("armed", due, other.id)

    third = f.make_user(world.circle, "doctor")
    estimate = later + timedelta(minutes=10)
    services.assign_visit(world.dispatcher, out["id"], third.id, later, arrive_by=estimate)
    row = _deadline(out["id"], "arrival")
    assert (row.state, row.due_at, row.doctor_id) == ("armed", estimate, third.id)
    assert db.session.scalar(select(func.count()).select_from(Deadline)) == 1  # one row, moved


def test_a_new_estimate_for_the_same_doctor_moves_the_deadline(world):
    on_shift(world.zone, world.doctor)
    out = _create(world)
    estimate = NOW + timedelta(minutes=25)
    moved = services.assign_visit(
        world.dispatcher, out["id"], world.doctor.id, LATER, arrive_by=estimate
    )
    assert moved["arrive_by"] == estimate
    assert moved["updated_at"] == LATER
    assert _deadline(out["id"], "arrival").due_at == estimate


def test_assignment_estimates_are_checked(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    for arrive_by in (LATER - timedelta(minutes=1), LATER + timedelta(hours=49)):
        with pytest.raises(ValidationFailed) as bad:
            services.assign_visit(
                world.dispatcher, visit.id, world.doctor.id, LATER, arrive_by=arrive_by
            )
        assert list(bad.value.fields) == ["arrive_by"]
    with pytest.raises(ValidationFailed) as bad:
        services.assign_visit(
            world.dispatcher, visit.id, None, LATER, "x", arrive_by=LATER + timedelta(minutes=9)
        )
    assert list(bad.value.fields) == ["arrive_by"]
    assert _deadline(visit.id, "arrival") is None


def test_cancelling_cancels_the_armed_deadline(world):
    on_shift(world.zone, world.doctor)
    out = _create(world)
    cancelled = services.cancel_visit(world.coordinator, out["id"], "Went to hospital", LATER)
    assert cancelled["deadlines"]["arrival"]["state"] == "cancelled"
    assert "deadline.arrival.cancelled" in [e.kind for e in events(out["id"])]


# --------------------------------------------------------------------------- check-in


def test_check_in_meets_the_arrival_and_arms_the_departure_with_a_reminder(world):
    out = _checked_in(world)
    due = LATER + timedelta(minutes=45)
    assert out["deadlines"]["arrival"]["state"] == "met"
    assert out["deadlines"]["departure"] == {
        "due_at": due, "state": "armed", "remind_at": due - timedelta(minutes=5),
        "extended_minutes": 0,
    }  # fmt: skip
    assert out["leave_by"] == due


def test_check_in_takes_the_expected_length_and_the_circles_reminder(world):
    _settings(world, visit_minutes=60, reminder_minutes=0)
    out = _checked_in(world)
    assert out["leave_by"] == LATER + timedelta(minutes=60)
    assert out["deadlines"]["departure"]["remind_at"] is None
    out = services.check_in(
        world.doctor, make_visit(world.zone, "assigned", world.doctor).id, LATER,
        expected_minutes=20,
    )
    assert out["leave_by"] == LATER + timedelta(minutes=20)


def test_expected_minutes_are_checked(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    for bad in (0, 481, True, "20"):
        with pytest.raises(ValidationFailed) as exc:
            services.check_in(world.doctor, visit.id, LATER, expected_minutes=bad)
        assert list(exc.value.fields) == ["expected_minutes"]
    assert db.session.get(Visit, visit.id).status == "assigned"


def test_a_late_check_in_still_meets_an_armed_deadline(world):
    on_shift(world.zone, world.doctor)
    out = _create(world)
    late = NOW + timedelta(hours=2)  # past due, the sweep has not run
    checked = services.check_in(world.doctor, out["id"], late)
    assert checked["deadlines"]["arrival"]["state"] == "met"
    assert process_due(late + timedelta(seconds=1)).missed == 0
    assert _alerts() == []


@pytest.mark.parametrize("acknowledged", [False, True], ids=["open", "acknowledged"])
def test_check_in_after_a_missed_arrival_resolves_its_alert(world, acknowledged):
    on_shift(world.zone, world.doctor)
    out = _create(world)
    due = NOW + timedelta(minutes=45)
    assert process_due(due).missed == 1
    (alert,) = _alerts()
    if acknowledged:
        locked = lifecycle.lock_alert(world.circle.id, alert.id)
        lifecycle.acknowledge(locked, world.coordinator.id, due + timedelta(minutes=1))
        db.session.commit()

    arrived = due + timedelta(minutes=3)
    checked = services.check_in(world.doctor, out["id"], arrived)
    assert checked["status"] == "on_site"
    assert checked["deadlines"]["arrival"]["state"] == "missed"  # it was missed; it stays so
    (alert,) = _alerts()
    assert alert.status == "resolved"
    assert (alert.resolved_by_id, alert.resolved_at) == (world.doctor.id, arrived)
    assert alert.resolution_note == "doctor checked in"
    assert alert.next_step_at is None


def test_a_resolved_missed_arrival_alert_is_left_alone(world):
    on_shift(world.zone, world.doctor)
    out = _create(world)
    due = NOW + timedelta(minutes=45)
    process_due(due)
    (alert,) = _alerts()
    locked = lifecycle.lock_alert(world.circle.id, alert.id)
    lifecycle.resolve(locked, world.coordinator.id, "Phoned, all fine", due + timedelta(minutes=1))
    db.session.commit()
    services.check_in(world.doctor, out["id"], due + timedelta(minutes=3))
    (alert,) = _alerts()
    assert (alert.resolved_by_id, alert.resolution_note) == (
        world.coordinator.id, "Phoned, all fine",
    )


def test_the_reminder_and_the_missed_checkout_follow_the_armed_departure(world):
    out = _checked_in(world)
    due = LATER + timedelta(minutes=45)
    assert process_due(due - timedelta(minutes=5, seconds=1)).reminded == 0
    assert process_due(due - timedelta(minutes=5)).reminded == 1
    assert process_due(due).missed == 1
    (alert,) = _alerts()
    assert (alert.kind, alert.visit_id) == ("missed_checkout", out["id"])


def test_a_check_in_that_fails_writes_no_deadline(world, monkeypatch):
    on_shift(world.zone, world.doctor)
    out = _create(world)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("presentation failed")

    monkeypatch.setattr("oncall.visits.onsite.present_one", broken)
    with pytest.raises(RuntimeError):
        services.check_in(world.doctor, out["id"], LATER)
    assert _deadline(out["id"], "arrival").state == "armed"
    assert _deadline(out["id"], "departure") is None
    assert db.session.get(Visit, out["id"]).status == "assigned"


# --------------------------------------------------------------------------- check-out


def test_check_out_meets_the_departure(world):
    out = _checked_in(world)
    done = LATER + timedelta(minutes=30)
    finished = services.check_out(world.doctor, out["id"], done)
    assert finished["deadlines"]["departure"]["state"] == "met"
    assert finished["deadlines"]["departure"]["remind_at"] is None
    assert process_due(done + timedelta(hours=2)).missed == 0


def test_check_out_after_a_missed_departure_resolves_its_alert(world):
    out = _checked_in(world)
    due = LATER + timedelta(minutes=45)
    process_due(due)
    services.check_out(world.doctor, out["id"], due + timedelta(minutes=4))
    (alert,) = _alerts()
    assert (alert.kind, alert.status) == ("missed_checkout", "resolved")
    assert alert.resolution_note == "doctor checked out"


# --------------------------------------------------------------------------- extend


def test_extend_moves_the_departure_later(world):
    out = _checked_in(world)
    due = LATER + timedelta(minutes=45)
    at = LATER + timedelta(minutes=30)
    extended = services.extend_visit(world.doctor, out["id"], at)
    assert extended["leave_by"] == due + timedelta(minutes=15)
    assert extended["updated_at"] == at
    extended = services.extend_visit(world.doctor, out["id"], at, minutes=30)
    departure = extended["deadlines"]["departure"]
    assert departure["due_at"] == due + timedelta(minutes=45)
    assert departure["extended_minutes"] == 45
    assert departure["remind_at"] == due + timedelta(minutes=40)
    assert extended["status"] == "on_site"


def test_extend_after_a_missed_departure_counts_from_now_and_resolves_the_alert(world):
    out = _checked_in(world)
    due = LATER + timedelta(minutes=45)
    process_due(due)
    answered = due + timedelta(minutes=3)
    extended = services.extend_visit(world.doctor, out["id"], answered, minutes=20)
    assert extended["deadlines"]["departure"]["state"] == "armed"
    assert extended["leave_by"] == answered + timedelta(minutes=20)
    (alert,) = _alerts()
    assert (alert.status, alert.resolution_note) == ("resolved", "doctor extended the visit")


def test_extend_a_visit_checked_in_without_a_deadline_arms_one(world):
    visit = make_visit(world.zone, "on_site", world.doctor)
    out = services.extend_visit(world.doctor, visit.id, LATER)
    assert out["leave_by"] == LATER + timedelta(minutes=15)


def test_extend_is_refused_unless_on_site_and_own(world):
    for status in ("assigned", "completed"):
        visit = make_visit(world.zone, status, world.doctor)
        with pytest.raises(Conflict) as exc:
            services.extend_visit(world.doctor, visit.id, LATER)
        assert exc.value.code == "visit_not_extendable"
    other = f.make_user(world.circle, "doctor")
    theirs = make_visit(world.zone, "on_site", other)
    with pytest.raises(NotFound):
        services.extend_visit(world.doctor, theirs.id, LATER)
    with pytest.raises(Forbidden):
        services.extend_visit(world.coordinator, theirs.id, LATER)
    for bad in (0, 241, -5, True):
        with pytest.raises(ValidationFailed) as invalid:
            services.extend_visit(other, theirs.id, LATER, minutes=bad)
        assert list(invalid.value.fields) == ["minutes"]


# --------------------------------------------------------------------------- over HTTP


def test_extend_over_http(client, world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    response = client.post(
        f"{API}/visits/{visit.id}/check-in", json={}, headers=world.headers["doctor"]
    )
    leave_by = response.get_json()["leave_by"]
    path = f"{API}/visits/{visit.id}/extend"
    response = client.post(path, json={}, headers=world.headers["doctor"])
    assert response.status_code == 200, response.get_json()
    first = response.get_json()["deadlines"]["departure"]
    assert first["extended_minutes"] == 15
    assert datetime.fromisoformat(first["due_at"]) == datetime.fromisoformat(
        leave_by
    ) + timedelta(minutes=15)
    response = client.post(path, json={"minutes": 241}, headers=world.headers["doctor"])
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["minutes"]
    response = client.post(path, json={"minutes": 10}, headers=world.headers["doctor"])
    assert response.get_json()["deadlines"]["departure"]["extended_minutes"] == 25
    response = client.post(path, json={}, headers=world.headers["dispatcher"])
    assert response.status_code == 403
    waiting = make_visit(world.zone, "assigned", world.doctor)
    response = client.post(
        f"{API}/visits/{waiting.id}/extend", json={}, headers=world.headers["doctor"]
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "visit_not_extendable"


def test_deadlines_over_http(client, world):
    visit = make_visit(world.zone, "unassigned")
    path = f"{API}/visits/{visit.id}"
    response = client.post(
        f"{path}/assign",
        json={"doctor_id": world.doctor.id, "arrive_by": "2099-01-01T10:00:00"},
        headers=world.headers["dispatcher"],
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["arrive_by"]
    response = client.post(
        f"{path}/assign", json={"doctor_id": world.doctor.id}, headers=world.headers["dispatcher"]
    )
    assert response.status_code == 200
    assert response.get_json()["deadlines"]["arrival"]["state"] == "armed"
    response = client.post(
        f"{path}/check-in", json={"expected_minutes": 30}, headers=world.headers["doctor"]
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["deadlines"]["arrival"]["state"] == "met"
    assert body["leave_by"] == body["deadlines"]["departure"]["due_at"]
    listed = client.get(f"{API}/visits", headers=world.headers["dispatcher"]).get_json()
    assert listed["items"][0]["deadlines"]["departure"]["state"] == "armed"
    route = client.get(
        f"{API}/doctors/{world.doctor.id}/itinerary", headers=world.headers["doctor"]
    ).get_json()
    assert route["visits"][0]["leave_by"] == body["leave_by"]


def test_the_visit_lock_lets_the_engine_reference_the_visit(world):
    """A visit use case locks the visit FOR NO KEY UPDATE: the engine's insert of an
    alert that references the visit (FOR KEY SHARE) is not blocked by it."""
    visit = make_visit(world.zone, "assigned", world.doctor)
    common.load_visit(world.doctor, visit.id, lock=True)
    with db.engine.connect() as other:
        other.exec_driver_sql("SET lock_timeout = '2s'")
        locked = other.exec_driver_sql(
            f"SELECT id FROM visits WHERE id = {visit.id} FOR KEY SHARE"
        ).scalar()
        assert locked == visit.id
        other.rollback()
    db.session.rollback()


def test_the_answers_match_the_api_document(app, client, world):
    """The deadlines and ``leave_by`` are described in the served document (every
    visit answer is checked against it, extra fields included)."""
    schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", app)
    visit = make_visit(world.zone, "unassigned")
    path = f"{API}/visits/{visit.id}"
    doctor, dispatcher = world.headers["doctor"], world.headers["dispatcher"]
    calls = [
        ("/visits/{visit_id}/assign", "POST", dispatcher, f"{path}/assign",
         {"doctor_id": world.doctor.id}),
        ("/visits/{visit_id}/check-in", "POST", doctor, f"{path}/check-in", {"code": None}),
        ("/visits/{visit_id}/extend", "POST", doctor, f"{path}/extend", {"minutes": 5}),
        ("/visits/{visit_id}", "GET", dispatcher, path, None),
        ("/visits", "GET", doctor, f"{API}/visits", None),
        ("/doctors/{doctor_id}/itinerary", "GET", doctor,
         f"{API}/doctors/{world.doctor.id}/itinerary", None),
        ("/visits/{visit_id}/check-out", "POST", doctor, f"{path}/check-out", {}),
    ]
    for rule, method, headers, url, body in calls:
        response = client.open(url, method=method, json=body, headers=headers)
        assert response.status_code == 200, (url, response.get_json())
        schema[f"{API}{rule}"][method].validate_response(response)
