"""The panic button and its cancel: check-in code, duress code, wrong code, no codes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from oncall.alerts.models import Alert
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.visits.models import Visit
from tests import factories as f
from tests.alerts.conftest import (
    API,
    CHECKIN_CODE,
    DURESS_CODE,
    alerts,
    claims,
    event_kinds,
    fresh,
    messages,
    open_by_hand,
    reachable,
    set_codes,
)
from tests.visits.conftest import make_visit


def _press(client: Any, world: Any, body: dict[str, Any] | None = None) -> Any:
    return client.post(f"{API}/panic", json=body or {}, headers=world.headers["doctor"])


def _cancel(client: Any, headers: dict[str, str], alert_id: int, code: Any) -> Any:
    return client.post(f"{API}/panic/{alert_id}/cancel", json={"code": code}, headers=headers)


# --------------------------------------------------------------------------- pressing


def test_panic_tells_coordinator_and_police_at_once_in_one_transaction(
    client: Any, world: Any, sender: dispatch.NullSender
) -> None:
    reach = reachable(world)
    visit = make_visit(world.zone, "on_site", world.doctor, utcnow())
    response = _press(client, world, {"location": {"lat": 50.85, "lon": 4.35, "accuracy": 12}})

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == {"alert_id", "status", "opened_at"}
    assert body["status"] == "open"
    alert = fresh(Alert, body["alert_id"])
    assert alert.kind == "panic"
    assert alert.visit_id == visit.id
    assert alert.doctor_id == world.doctor.id
    assert alert.zone_id == world.zone.id
    assert (alert.lat, alert.lon, alert.accuracy_m) == (50.85, 4.35, 12.0)

    # Steps 1 (coordinator) and 2 (police) fired at the press, with their messages.
    fired = claims(alert.id)
    assert [(c.level, c.target) for c in fired] == [(1, "coordinator"), (2, "police")]
    assert all(c.fired_at == alert.opened_at for c in fired)
    coordinator = messages(alert.id, "user", world.coordinator.id)
    police = messages(alert.id, "police_contact", reach.police.id)
    assert len(coordinator) == 1
    assert len(police) == 1
    assert {m.created_at for m in coordinator + police} == {alert.opened_at}
    assert messages(alert.id, "user", world.doctor.id) == []
    assert messages(alert.id, "police_contact", reach.circle_police.id) == []

    # Handed to a worker on commit, so delivery starts at once.
    delivered = [args[0] for task, args in sender.sent if task == dispatch.DELIVER]
    assert sorted(i for batch in delivered for i in batch) == sorted(
        m.id for m in messages(alert.id)
    )
    # The location is kept on the visit too.
    stored = fresh(Visit, visit.id)
    assert (stored.last_lat, stored.last_lon, stored.last_accuracy_m) == (50.85, 4.35, 12.0)
    assert "alert.opened" in event_kinds(alert.id)


def test_without_visit_id_the_visit_on_site_is_chosen(client: Any, world: Any) -> None:
    reachable(world)
    now = utcnow()
    make_visit(world.zone, "assigned", world.doctor, now, arrive_by=now + timedelta(minutes=5))
    on_site = make_visit(world.zone, "on_site", world.doctor, now)
    response = _press(client, world)
    assert response.status_code == 201
    assert fresh(Alert, response.get_json()["alert_id"]).visit_id == on_site.id


def test_without_visit_on_site_the_next_assigned_visit_is_chosen(client: Any, world: Any) -> None:
    reachable(world)
    now = utcnow()
    make_visit(world.zone, "assigned", world.doctor, now, arrive_by=now + timedelta(minutes=50))
    soonest = make_visit(world.zone, "assigned", world.doctor, now,
                         arrive_by=now + timedelta(minutes=10))
    make_visit(world.zone, "completed", world.doctor, now)
    response = _press(client, world)
    assert response.status_code == 201
    assert fresh(Alert, response.get_json()["alert_id"]).visit_id == soonest.id


def test_without_any_visit_the_alert_opens_and_tells_the_circle_police(
    client: Any, world: Any
) -> None:
    reach = reachable(world)
    make_visit(world.zone, "completed", world.doctor, utcnow())
    response = _press(client, world, {"location": {"lat": 50.1, "lon": 4.2}})
    assert response.status_code == 201
    alert = fresh(Alert, response.get_json()["alert_id"])
    assert alert.visit_id is None
    assert alert.zone_id is None
    assert len(messages(alert.id, "police_contact", reach.circle_police.id)) == 1
    assert messages(alert.id, "police_contact", reach.police.id) == []
    assert len(messages(alert.id, "user", world.coordinator.id)) == 1


def test_a_named_visit_is_used_and_must_be_the_doctors_own(
    client: Any, world: Any, other_world: Any
) -> None:
    reachable(world)
    now = utcnow()
    make_visit(world.zone, "on_site", world.doctor, now)
    named = make_visit(world.zone, "assigned", world.doctor, now)
    response = _press(client, world, {"visit_id": named.id})
    assert response.status_code == 201
    assert fresh(Alert, response.get_json()["alert_id"]).visit_id == named.id

    colleague = f.make_user(world.circle, "doctor")
    theirs = make_visit(world.zone, "on_site", colleague, now)
    elsewhere = make_visit(other_world.zone, "on_site", other_world.doctor, now)
    before = len(alerts())
    for visit_id in (theirs.id, elsewhere.id, 10**12):
        response = _press(client, world, {"visit_id": visit_id})
        assert response.status_code == 404, visit_id
        assert response.get_json()["error"]["code"] == "visit_not_found"
    assert len(alerts()) == before


@pytest.mark.parametrize("role", ["admin", "dispatcher", "coordinator"])
def test_only_a_doctor_presses_the_panic_button(client: Any, world: Any, role: str) -> None:
    response = client.post(f"{API}/panic", json={}, headers=world.headers[role])
    assert response.status_code == 403
    assert alerts() == []


def test_panic_needs_authentication(client: Any, world: Any) -> None:
    assert client.post(f"{API}/panic", json={}).status_code == 401


def test_a_bad_location_is_refused_and_nothing_opens(client: Any, world: Any) -> None:
    response = _press(client, world, {"location": {"lat": 123, "lon": 4}})
    assert response.status_code == 422
    assert "location.lat" in response.get_json()["error"]["fields"]
    assert alerts() == []


# --------------------------------------------------------------------------- cancelling


def _panic_of(client: Any, world: Any) -> int:
    response = _press(client, world)
    assert response.status_code == 201
    return int(response.get_json()["alert_id"])


def test_the_checkin_code_resolves_the_panic_and_stands_the_police_down(
    client: Any, world: Any
) -> None:
    reach = reachable(world)
    set_codes(world.doctor)
    make_visit(world.zone, "on_site", world.doctor, utcnow())
    alert_id = _panic_of(client, world)

    response = _cancel(client, world.headers["doctor"], alert_id, CHECKIN_CODE)
    assert response.status_code == 200
    assert response.get_json() == {"alert_id": alert_id, "status": "cancelled"}
    alert = fresh(Alert, alert_id)
    assert alert.status == "resolved"
    assert alert.next_step_at is None
    assert alert.resolved_by_id == world.doctor.id
    assert alert.resolution_note == "Cancelled by the doctor with their code."
    stand_down = [m for m in messages(alert_id, "police_contact", reach.police.id)
                  if m.purpose == "alert.resolved"]
    assert len(stand_down) == 1
    assert alerts("duress") == []


def _same(first: Any, second: Any) -> None:
    """Status, body and every header byte-identical (the test client adds no Date)."""
    assert first.status_code == second.status_code
    assert first.get_data() == second.get_data()
    assert sorted(first.headers.items()) == sorted(second.headers.items())


def test_the_duress_code_answers_exactly_like_a_cancel_and_opens_a_silent_duress_alert(
    client: Any, world: Any
) -> None:
    reach = reachable(world)
    set_codes(world.doctor)
    visit = make_visit(world.zone, "on_site", world.doctor, utcnow())
    alert_id = _panic_of(client, world)
    headers = world.headers["doctor"]

    under_duress = _cancel(client, headers, alert_id, DURESS_CODE)
    panic = fresh(Alert, alert_id)
    assert panic.status == "open"  # the panic goes on
    duress = alerts("duress")
    assert len(duress) == 1
    assert duress[0].visit_id == visit.id
    assert duress[0].doctor_id == world.doctor.id
    assert duress[0].status == "open"
    # Coordinator and police are told at once; never the doctor's phone.
    assert len(messages(duress[0].id, "user", world.coordinator.id)) == 1
    assert len(messages(duress[0].id, "police_contact", reach.police.id)) == 1
    assert messages(duress[0].id, "user", world.doctor.id) == []
    assert "alert.cancelled_under_duress" in event_kinds(alert_id)

    for_real = _cancel(client, headers, alert_id, CHECKIN_CODE)
    assert fresh(Alert, alert_id).status == "resolved"
    _same(under_duress, for_real)
    assert under_duress.status_code == 200

    # Once resolved: a cancel answers the same, and the duress code is still heard.
    again = _cancel(client, headers, alert_id, CHECKIN_CODE)
    _same(again, for_real)
    assert fresh(Alert, duress[0].id).status == "open"
    # The open duress alert is marked again rather than duplicated...
    repeat = _cancel(client, headers, alert_id, DURESS_CODE)
    _same(repeat, for_real)
    assert len(alerts("duress")) == 1
    assert "alert.duress_repeated" in event_kinds(duress[0].id)


def test_a_duress_cancel_of_a_resolved_panic_still_opens_a_duress_alert(
    client: Any, world: Any
) -> None:
    reachable(world)
    set_codes(world.doctor)
    alert_id = _panic_of(client, world)
    first = _cancel(client, world.headers["doctor"], alert_id, CHECKIN_CODE)
    assert fresh(Alert, alert_id).status == "resolved"

    forced = _cancel(client, world.headers["doctor"], alert_id, DURESS_CODE)
    _same(first, forced)
    duress = alerts("duress")
    assert len(duress) == 1
    assert duress[0].status == "open"
    assert len(messages(duress[0].id, "user", world.coordinator.id)) == 1


def test_a_wrong_code_is_refused_and_written_on_the_timeline(client: Any, world: Any) -> None:
    reachable(world)
    set_codes(world.doctor)
    alert_id = _panic_of(client, world)
    response = _cancel(client, world.headers["doctor"], alert_id, "0000")
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["code"]
    assert fresh(Alert, alert_id).status == "open"
    assert alerts("duress") == []
    assert "alert.cancel_refused" in event_kinds(alert_id)


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": "   "}, {"code": None}])
def test_a_missing_code_is_refused(client: Any, world: Any, body: dict[str, Any]) -> None:
    set_codes(world.doctor)
    alert_id = _panic_of(client, world)
    response = client.post(f"{API}/panic/{alert_id}/cancel", json=body,
                           headers=world.headers["doctor"])
    assert response.status_code == 422
    assert "code" in response.get_json()["error"]["fields"]
    assert fresh(Alert, alert_id).status == "open"


def test_a_doctor_without_codes_is_told_to_set_them(client: Any, world: Any) -> None:
    alert_id = _panic_of(client, world)
    response = _cancel(client, world.headers["doctor"], alert_id, CHECKIN_CODE)
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"code": ["Set your codes first."]}
    assert fresh(Alert, alert_id).status == "open"


def test_only_the_doctors_own_panic_can_be_cancelled(
    client: Any, world: Any, other_world: Any
) -> None:
    set_codes(world.doctor)
    colleague = f.make_user(world.circle, "doctor")
    set_codes(colleague)
    theirs = open_by_hand(world, "panic", doctor=colleague)
    missed = open_by_hand(world, "missed_arrival", visit=make_visit(
        world.zone, "assigned", world.doctor, utcnow()))
    other = open_by_hand(other_world, "panic")
    for alert_id in (theirs.id, missed.id, other.id, 10**15):
        response = _cancel(client, world.headers["doctor"], alert_id, CHECKIN_CODE)
        assert response.status_code == 404, alert_id
        assert response.get_json()["error"]["code"] == "alert_not_found"
        # Not even the body is looked at.
        empty = client.post(f"{API}/panic/{alert_id}/cancel", json={},
                            headers=world.headers["doctor"])
        assert empty.status_code == 404
    assert fresh(Alert, theirs.id).status == "open"
    assert fresh(Alert, other.id).status == "open"


@pytest.mark.parametrize("role", ["admin", "dispatcher", "coordinator"])
def test_staff_cannot_use_the_doctors_cancel(client: Any, world: Any, role: str) -> None:
    alert = open_by_hand(world, "panic")
    response = _cancel(client, world.headers[role], alert.id, CHECKIN_CODE)
    assert response.status_code == 403


def test_a_second_press_joins_the_alert_the_first_opened(client: Any, world: Any) -> None:
    reach = reachable(world)
    make_visit(world.zone, "on_site", world.doctor, utcnow())
    first = _press(client, world)
    again = _press(client, world, {"location": {"lat": 50.8, "lon": 4.3}})
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert len(alerts("panic")) == 1
    alert_id = first.get_json()["alert_id"]
    assert "alert.pressed_again" in event_kinds(alert_id)
    assert len(messages(alert_id, "police_contact", reach.police.id)) == 1
    assert fresh(Alert, alert_id).lat == 50.8


def test_wrong_codes_lock_the_cancel_but_the_duress_code_is_always_heard(
    client: Any, world: Any
) -> None:
    from oncall.accounts.codes import WRONG_CODE_LIMIT

    reachable(world)
    set_codes(world.doctor)
    alert_id = _panic_of(client, world)
    headers = world.headers["doctor"]
    for _ in range(WRONG_CODE_LIMIT):
        assert _cancel(client, headers, alert_id, "0000").status_code == 422
    locked_out = _cancel(client, headers, alert_id, "0001")
    assert locked_out.status_code == 429
    assert "Retry-After" in locked_out.headers
    # The right code is refused too while locked: guessing it is pointless...
    assert _cancel(client, headers, alert_id, CHECKIN_CODE).status_code == 429
    assert fresh(Alert, alert_id).status == "open"
    # ...but the duress code still opens the silent alert.
    assert _cancel(client, headers, alert_id, DURESS_CODE).status_code == 200
    assert len(alerts("duress")) == 1
