"""The alerts HTTP API: list, one alert, acknowledge, escalate, resolve; roles and circles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from oncall.alerts import lifecycle
from oncall.alerts.engine import open_alert, process_due
from oncall.alerts.models import Alert
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.extensions import db
from tests import factories as f
from tests.alerts.conftest import (
    API,
    access_rows,
    claims,
    fresh,
    messages,
    open_by_hand,
    reachable,
)
from tests.visits.conftest import make_visit


def _visit(world: Any, status: str = "assigned") -> Any:
    return make_visit(world.zone, status, world.doctor, utcnow())


def _opened_at(world: Any, kind: str, minutes_ago: int, visit: Any = None) -> Alert:
    alert = open_alert(circle_id=world.circle.id, kind=kind,
                       now=utcnow() - timedelta(minutes=minutes_ago), visit=visit,
                       doctor_id=world.doctor.id)
    db.session.commit()
    return alert


# --------------------------------------------------------------------------- list


def test_the_list_shows_open_alerts_first_then_resolved_newest_first(
    client: Any, world: Any, other_world: Any
) -> None:
    reachable(world)
    visit = _visit(world)
    old_open = _opened_at(world, "missed_arrival", 30, visit)
    resolved_recent = _opened_at(world, "panic", 5)
    new_open = _opened_at(world, "panic", 10)
    resolved_old = _opened_at(world, "missed_checkout", 40, visit)
    for alert in (resolved_recent, resolved_old):
        locked = lifecycle.lock_alert(world.circle.id, alert.id)
        assert locked is not None
        lifecycle.resolve(locked, world.coordinator.id, "safe", utcnow())
    db.session.commit()
    _opened_at(other_world, "panic", 1)

    response = client.get(f"{API}/alerts", headers=world.headers["dispatcher"])
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"items", "limit", "offset", "next_offset"}
    assert [a["id"] for a in body["items"]] == [
        new_open.id, old_open.id, resolved_recent.id, resolved_old.id
    ]
    assert body["next_offset"] is None
    first = body["items"][0]
    assert first["doctor"] == {"id": world.doctor.id, "name": world.doctor.name}
    assert first["kind"] == "panic"
    assert first["status"] == "open"
    assert "timeline" not in first

    page = client.get(f"{API}/alerts?limit=3", headers=world.headers["admin"]).get_json()
    assert len(page["items"]) == 3
    assert page["next_offset"] == 3
    rest = client.get(f"{API}/alerts?limit=3&offset=3", headers=world.headers["admin"])
    assert [a["id"] for a in rest.get_json()["items"]] == [resolved_old.id]

    # The alerts linked to a visit were read: the access log says so.
    logged = [(r.subject_type, r.subject_id, r.action) for r in access_rows(world.dispatcher.id)]
    assert ("visit", visit.id, "alert_list") in logged


def test_the_list_filters(client: Any, world: Any) -> None:
    visit = _visit(world)
    missed = _opened_at(world, "missed_arrival", 3, visit)
    panic = _opened_at(world, "panic", 2)
    colleague = f.make_user(world.circle, "doctor")
    theirs = open_alert(circle_id=world.circle.id, kind="panic", now=utcnow(),
                        doctor_id=colleague.id)
    db.session.commit()
    headers = world.headers["coordinator"]

    def ids(query: str) -> list[int]:
        response = client.get(f"{API}/alerts?{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return [a["id"] for a in response.get_json()["items"]]

    assert ids("kind=panic") == [theirs.id, panic.id]
    assert ids("kind=panic&kind=missed_arrival") == [theirs.id, panic.id, missed.id]
    assert ids(f"visit_id={visit.id}") == [missed.id]
    assert ids(f"doctor_id={colleague.id}") == [theirs.id]
    assert ids("status=resolved") == []
    assert ids("status=open") == [theirs.id, panic.id, missed.id]
    bad = client.get(f"{API}/alerts?kind=nonsense&status=gone", headers=headers)
    assert bad.status_code == 422
    fields = bad.get_json()["error"]["fields"]
    assert {name.split(".")[0] for name in fields} == {"kind", "status"}


def test_another_circle_sees_none_of_the_alerts(client: Any, world: Any, other_world: Any) -> None:
    _opened_at(world, "panic", 1)
    response = client.get(f"{API}/alerts", headers=other_world.headers["admin"])
    assert response.status_code == 200
    assert response.get_json()["items"] == []


def test_a_doctor_does_not_read_alerts(client: Any, world: Any) -> None:
    alert = _opened_at(world, "panic", 1)
    assert client.get(f"{API}/alerts", headers=world.headers["doctor"]).status_code == 403
    assert client.get(f"{API}/alerts/{alert.id}",
                      headers=world.headers["doctor"]).status_code == 403


# --------------------------------------------------------------------------- one alert


def test_one_alert_shows_policy_progress_timeline_claims_and_masked_deliveries(
    client: Any, world: Any
) -> None:
    reach = reachable(world)
    visit = _visit(world)
    alert = open_by_hand(world, "missed_arrival", visit=visit)

    response = client.get(f"{API}/alerts/{alert.id}", headers=world.headers["coordinator"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["kind"] == "missed_arrival"
    assert body["status"] == "open"
    assert body["level"] == 1
    assert body["visit_id"] == visit.id
    assert body["zone_id"] == world.zone.id
    assert body["next_step_at"] is not None
    assert [s["target"] for s in body["policy"]] == ["doctor", "coordinator", "police"]
    assert body["progress"] == [1, 0, 0]
    assert body["acknowledged_by"] is None
    assert body["resolved_by"] is None
    assert [e["kind"] for e in body["timeline"]][:2] == ["alert.opened", "alert.step_fired"]
    assert [(c["level"], c["target"], c["messages"]) for c in body["claims"]] == [
        (1, "doctor", 1)
    ]
    [delivery] = body["deliveries"]
    assert delivery["channel"] == "webhook"
    assert delivery["address"] == "https://hooks.example.org/***"
    assert delivery["recipient_type"] == "user"
    assert delivery["recipient_id"] == world.doctor.id
    assert delivery["state"] == "pending"
    assert delivery["attempts"] == 0
    assert not {"body", "subject", "payload"} & set(delivery)
    assert "secret" not in response.get_data(as_text=True)
    assert reach.police.id  # the police step has not fired yet
    assert [(r.subject_type, r.subject_id, r.action) for r in access_rows(
        world.coordinator.id)] == [("visit", visit.id, "alert_read")]


def test_an_alert_without_a_visit_is_read_without_an_access_log_row(
    client: Any, world: Any
) -> None:
    alert = open_by_hand(world, "panic")
    response = client.get(f"{API}/alerts/{alert.id}", headers=world.headers["dispatcher"])
    assert response.status_code == 200
    assert access_rows(world.dispatcher.id) == []


# --------------------------------------------------------------------------- acknowledge


def test_the_first_to_acknowledge_takes_charge_and_the_second_sees_who(
    client: Any, world: Any
) -> None:
    reachable(world)
    alert = open_by_hand(world, "panic")
    second = f.make_user(world.circle, "coordinator", name="Second Coordinator")

    first = client.post(f"{API}/alerts/{alert.id}/acknowledge",
                        headers=world.headers["coordinator"])
    assert first.status_code == 200
    took = first.get_json()
    assert took["status"] == "acknowledged"
    assert took["acknowledged_by"] == {"id": world.coordinator.id, "name": world.coordinator.name}

    later = client.post(f"{API}/alerts/{alert.id}/acknowledge", headers=f.auth(second))
    assert later.status_code == 200
    assert later.get_json()["acknowledged_by"]["name"] == world.coordinator.name
    assert later.get_json()["acknowledged_at"] == took["acknowledged_at"]
    assert fresh(Alert, alert.id).acknowledged_by_id == world.coordinator.id


def test_acknowledge_needs_a_coordinator_or_admin(client: Any, world: Any) -> None:
    alert = open_by_hand(world, "panic")
    for role in ("dispatcher", "doctor"):
        response = client.post(f"{API}/alerts/{alert.id}/acknowledge", headers=world.headers[role])
        assert response.status_code == 403
    assert client.post(f"{API}/alerts/{alert.id}/acknowledge",
                       headers=world.headers["admin"]).status_code == 200


# --------------------------------------------------------------------------- escalate


def test_escalate_tells_the_police_now_instead_of_in_ten_minutes(
    client: Any, world: Any, sender: dispatch.NullSender
) -> None:
    reach = reachable(world)
    alert = open_by_hand(world, "missed_arrival", visit=_visit(world))
    assert messages(alert.id, "police_contact", reach.police.id) == []
    assert fresh(Alert, alert.id).next_step_at > utcnow() + timedelta(minutes=1)

    response = client.post(f"{API}/alerts/{alert.id}/escalate",
                           headers=world.headers["coordinator"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["escalated_by"]["id"] == world.coordinator.id
    assert body["escalated_at"] is not None
    police = messages(alert.id, "police_contact", reach.police.id)
    assert len(police) == 1
    assert police[0].payload["briefing"]["doctor"]["name"] == world.doctor.name
    assert "police" in [c.target for c in claims(alert.id)]
    handed = [i for task, args in sender.sent if task == dispatch.DELIVER for i in args[0]]
    assert police[0].id in handed

    # Escalating again does not tell them twice.
    again = client.post(f"{API}/alerts/{alert.id}/escalate", headers=world.headers["admin"])
    assert again.status_code == 200
    assert len(messages(alert.id, "police_contact", reach.police.id)) == 1


# --------------------------------------------------------------------------- resolve


def test_resolve_stops_everything(client: Any, world: Any) -> None:
    reach = reachable(world)
    alert = open_by_hand(world, "missed_arrival", visit=_visit(world))
    response = client.post(f"{API}/alerts/{alert.id}/resolve",
                           json={"note": "Doctor reached by phone, safe"},
                           headers=world.headers["coordinator"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "resolved"
    assert body["next_step_at"] is None
    assert body["resolved_by"]["id"] == world.coordinator.id
    assert body["resolution_note"] == "Doctor reached by phone, safe"

    fired = len(claims(alert.id))
    sent = len(messages(alert.id))
    process_due(utcnow() + timedelta(hours=1))
    assert len(claims(alert.id)) == fired
    assert len(messages(alert.id)) == sent
    assert messages(alert.id, "police_contact", reach.police.id) == []
    assert fresh(Alert, alert.id).status == "resolved"

    for action, body_ in (("resolve", {"note": "again"}), ("acknowledge", None),
                          ("escalate", None)):
        late = client.post(f"{API}/alerts/{alert.id}/{action}", json=body_,
                           headers=world.headers["coordinator"])
        assert late.status_code == 409, action
        assert late.get_json()["error"]["code"] == "alert_already_resolved"


@pytest.mark.parametrize("body", [{}, {"note": ""}, {"note": "   "}, {"note": "x" * 2001},
                                  {"note": None}])
def test_resolve_needs_a_note(client: Any, world: Any, body: dict[str, Any]) -> None:
    alert = open_by_hand(world, "panic")
    response = client.post(f"{API}/alerts/{alert.id}/resolve", json=body,
                           headers=world.headers["coordinator"])
    assert response.status_code == 422
    assert "note" in response.get_json()["error"]["fields"]
    assert fresh(Alert, alert.id).status == "open"


# --------------------------------------------------------------------------- circles


def test_another_circle_gets_404_everywhere(client: Any, world: Any, other_world: Any) -> None:
    reachable(world)
    alert = open_by_hand(world, "panic", visit=_visit(world, "on_site"))
    other = other_world.headers["admin"]
    calls = [
        ("GET", f"/alerts/{alert.id}", None),
        ("GET", f"/alerts/{alert.id}/briefing", None),
        ("GET", f"/alerts/{alert.id}/briefing?format=html", None),
        ("POST", f"/alerts/{alert.id}/acknowledge", None),
        ("POST", f"/alerts/{alert.id}/escalate", None),
        ("POST", f"/alerts/{alert.id}/resolve", {"note": "not yours"}),
        ("POST", f"/alerts/{alert.id}/resolve", {}),
    ]
    for method, path, body in calls:
        response = client.open(f"{API}{path}", method=method, json=body, headers=other)
        assert response.status_code == 404, (method, path)
        assert response.get_json()["error"]["code"] == "alert_not_found"
    response = client.post(f"{API}/panic/{alert.id}/cancel", json={"code": "1234"},
                           headers=other_world.headers["doctor"])
    assert response.status_code == 404
    unchanged = fresh(Alert, alert.id)
    assert unchanged.status == "open"
    assert unchanged.escalated_at is None
    assert access_rows(other_world.admin.id) == []
