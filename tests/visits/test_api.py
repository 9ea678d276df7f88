"""The visits HTTP API: roles, scoping, bad input, access log, list and itinerary."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from oncall.core.clock import utcnow
from oncall.core.timeline import AccessLogEntry
from oncall.extensions import db
from oncall.visits.models import Visit
from tests import factories as f
from tests.visits.conftest import counts, has_field, make_call, make_visit, on_shift

API = "/api/v1"
ROLES = ("admin", "dispatcher", "doctor", "coordinator")


def _now_shift(world: Any, doctor: Any = None) -> Any:
    return on_shift(world.zone, doctor or world.doctor, utcnow())


def _visit(world: Any, status: str = "assigned", doctor: Any = None, **kw: Any) -> Visit:
    return make_visit(world.zone, status, doctor or world.doctor, utcnow(), **kw)


def _access_rows(user_id: int) -> list[AccessLogEntry]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(AccessLogEntry)
            .where(AccessLogEntry.user_id == user_id)
            .order_by(AccessLogEntry.id)
        )
    )


# --------------------------------------------------------------------------- create


def test_post_visits_answers_201_with_the_assigned_visit(client, world):
    _now_shift(world)
    call = make_call(world.circle, utcnow())
    response = client.post(
        f"{API}/visits",
        json={"call_id": call.id, "zone_id": world.zone.id, "eta_minutes": 20},
        headers=world.headers["dispatcher"],
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "assigned"
    assert body["doctor_id"] == world.doctor.id
    assert body["doctor_name"] == world.doctor.name
    assert body["unassigned_reason"] is None
    assert body["patient"]["name"] == "Jeanne Dupont"
    assert body["address"]["city"] == "Bruxelles"
    assert body["preparation"]["dogs_secured"] is True
    assert body["last_location"] is None
    assert body["arrive_by"].endswith("+00:00")
    assert "timeline" not in body
    assert set(body) == {
        "id", "call_id", "zone_id", "doctor_id", "doctor_name", "status", "unassigned_reason",
        "patient", "address", "preparation", "reason", "identity_verified", "arrive_by",
        "created_at", "updated_at", "assigned_at", "checked_in_at", "checked_out_at",
        "cancelled_at", "cancel_reason", "outcome_note", "last_location", "leave_by",
        "deadlines",
    }  # fmt: skip


def test_post_visits_without_anyone_on_duty_is_unassigned(client, world):
    call = make_call(world.circle, utcnow())
    response = client.post(
        f"{API}/visits",
        json={"call_id": call.id, "zone_id": world.zone.id},
        headers=world.headers["admin"],
    )
    assert response.status_code == 201
    body = response.get_json()
    assert (body["status"], body["doctor_id"], body["unassigned_reason"]) == (
        "unassigned",
        None,
        "no_doctor_on_duty",
    )


def test_post_visits_naive_local_arrive_by(client, world):
    call = make_call(world.circle, utcnow())
    local = (utcnow() + timedelta(days=1)).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Brussels")
    )
    naive = local.replace(tzinfo=None, microsecond=0, hour=14, minute=0)
    response = client.post(
        f"{API}/visits",
        json={"call_id": call.id, "zone_id": world.zone.id, "arrive_by": naive.isoformat()},
        headers=world.headers["dispatcher"],
    )
    assert response.status_code == 201, response.get_json()
    expected = naive.replace(tzinfo=local.tzinfo).astimezone(__import__("datetime").UTC)
    assert response.get_json()["arrive_by"] == expected.isoformat()


def _bad_create_payloads(world: Any, other_world: Any) -> list[tuple[dict[str, Any], str]]:
    call = make_call(world.circle, utcnow())
    foreign_call = make_call(other_world.circle, utcnow())
    closed_zone = f.make_zone(world.circle, "Fermée", active=False)
    base = {"call_id": call.id, "zone_id": world.zone.id}
    past = (utcnow() - timedelta(minutes=5)).isoformat()
    future = (utcnow() + timedelta(hours=1)).isoformat()
    return [
        ({"zone_id": world.zone.id}, "call_id"),
        (base | {"call_id": "12"}, "call_id"),
        (base | {"call_id": 1.5}, "call_id"),
        (base | {"call_id": foreign_call.id}, "call_id"),
        (base | {"call_id": 987654}, "call_id"),
        (base | {"call_id": 10**20}, "call_id"),
        ({"call_id": call.id}, "zone_id"),
        (base | {"zone_id": other_world.zone.id}, "zone_id"),
        (base | {"zone_id": closed_zone.id}, "zone_id"),
        (base | {"zone_id": 2**40}, "zone_id"),
        (base | {"arrive_by": past}, "arrive_by"),
        (base | {"arrive_by": "tomorrow evening"}, "arrive_by"),
        (base | {"arrive_by": "0001-01-01T00:10:00"}, "arrive_by"),
        (base | {"arrive_by": "9999-12-31T23:59:00-01:00"}, "arrive_by"),
        (base | {"arrive_by": (utcnow() + timedelta(hours=49)).isoformat()}, "arrive_by"),
        (base | {"arrive_by": "2030-03-31T02:30:00"}, "arrive_by"),  # skipped by DST
        (base | {"eta_minutes": 0}, "eta_minutes"),
        (base | {"eta_minutes": 241}, "eta_minutes"),
        (base | {"arrive_by": future, "eta_minutes": 10}, "eta_minutes"),
        (base | {"patient": {"age": -1}}, "patient.age"),
        (base | {"patient": {"name": "x" * 161}}, "patient.name"),
        (base | {"patient": {"phone": "call me"}}, "patient.phone"),
        (base | {"patient": {"birth_date": "1990-02-30"}}, "patient.birth_date"),
        (base | {"patient": {"blood": "A+"}}, "patient.blood"),
        (base | {"patient": "Jeanne"}, "patient"),
        (base | {"address": {"dwelling": "castle"}}, "address.dwelling"),
        (base | {"address": {"postcode": "1" * 13}}, "address.postcode"),
        (base | {"preparation": {"caller_relation": "stranger"}}, "preparation.caller_relation"),
        (base | {"preparation": {"dogs_secured": "maybe"}}, "preparation.dogs_secured"),
        (base | {"reason": "x" * 2001}, "reason"),
        (base | {"reason": "nul\x00byte"}, "reason"),
        (base | {"address": {"city": "\ud800"}}, "address.city"),
        (base | {"identity_verified": "perhaps"}, "identity_verified"),
        (base | {"colour": "blue"}, "colour"),
    ]


def test_post_visits_bad_input_names_the_field_and_writes_nothing(client, world, other_world):
    for payload, field in _bad_create_payloads(world, other_world):
        before = counts()
        response = client.post(f"{API}/visits", json=payload, headers=world.headers["dispatcher"])
        assert response.status_code == 422, (payload, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == "validation_failed"
        assert has_field(error["fields"], field), (payload, error)
        assert counts() == before, payload


def test_post_visits_not_json_is_a_4xx(client, world):
    before = counts()
    response = client.post(
        f"{API}/visits",
        data="call_id=1",
        headers=world.headers["dispatcher"] | {"Content-Type": "application/json"},
    )
    assert response.status_code in (400, 415, 422)
    assert counts() == before


def test_post_visits_twice_for_one_call_is_409(client, world):
    call = make_call(world.circle, utcnow())
    payload = {"call_id": call.id, "zone_id": world.zone.id}
    first = client.post(f"{API}/visits", json=payload, headers=world.headers["admin"])
    assert first.status_code == 201
    before = counts()
    response = client.post(f"{API}/visits", json=payload, headers=world.headers["admin"])
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "call_has_open_visit"
    assert counts() == before


# --------------------------------------------------------------------------- roles


def _routes(world: Any) -> list[tuple[str, str, dict[str, Any] | None, set[str]]]:
    visit = _visit(world)
    return [
        ("get", f"{API}/visits", None, {"admin", "dispatcher", "coordinator", "doctor"}),
        ("post", f"{API}/visits", {"call_id": 1, "zone_id": 1}, {"admin", "dispatcher"}),
        ("get", f"{API}/visits/{visit.id}", None, {"admin", "dispatcher", "coordinator", "doctor"}),
        (
            "post",
            f"{API}/visits/{visit.id}/assign",
            {"doctor_id": None, "reason": "x"},
            {"admin", "dispatcher", "coordinator"},
        ),
        (
            "post",
            f"{API}/visits/{visit.id}/cancel",
            {"reason": "x"},
            {"admin", "dispatcher", "coordinator"},
        ),
        ("post", f"{API}/visits/{visit.id}/check-in", {}, {"doctor"}),
        ("post", f"{API}/visits/{visit.id}/check-out", {}, {"doctor"}),
        (
            "get",
            f"{API}/doctors/{world.doctor.id}/itinerary",
            None,
            {"admin", "dispatcher", "coordinator", "doctor"},
        ),
    ]


def test_every_route_enforces_the_role_table(client, world):
    for method, path, body, allowed in _routes(world):
        for role in ROLES:
            before = counts()
            kwargs: dict[str, Any] = {"headers": world.headers[role]}
            if body is not None:
                kwargs["json"] = body
            response = getattr(client, method)(path, **kwargs)
            if role in allowed:
                assert response.status_code != 403, (method, path, role)
            else:
                assert response.status_code == 403, (method, path, role, response.get_json())
                assert response.get_json()["error"]["code"] == "role_forbidden"
                assert counts() == before
        anonymous = client.open(path, method=method.upper(), json=body)
        assert anonymous.status_code == 401, (method, path)


def test_openapi_documents_the_routes_and_roles(client):
    spec = client.get(f"{API}/openapi.json").get_json()
    paths = spec["paths"]
    assert paths[f"{API}/visits"]["post"]["x-roles"] == ["admin", "dispatcher"]
    assert paths[f"{API}/visits/{{visit_id}}/check-in"]["post"]["x-roles"] == ["doctor"]
    assert "201" in paths[f"{API}/visits"]["post"]["responses"]
    assert f"{API}/doctors/{{doctor_id}}/itinerary" in paths


# --------------------------------------------------------------------------- reading


def test_get_visit_returns_detail_with_timeline_and_logs_the_read(client, world):
    _now_shift(world)
    call = make_call(world.circle, utcnow())
    created = client.post(
        f"{API}/visits",
        json={"call_id": call.id, "zone_id": world.zone.id},
        headers=world.headers["dispatcher"],
    ).get_json()
    response = client.get(f"{API}/visits/{created['id']}", headers=world.headers["coordinator"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == created["id"]
    assert [e["kind"] for e in body["timeline"]] == [
        "visit.created", "visit.assigned", "deadline.arrival.armed",
    ]  # fmt: skip
    assert body["timeline"][0]["actor_id"] == world.dispatcher.id
    assert set(body["timeline"][0]) == {"id", "at", "kind", "actor_id", "data"}
    (row,) = _access_rows(world.coordinator.id)
    assert (row.subject_type, row.subject_id, row.action) == ("visit", created["id"], "read")
    assert row.circle_id == world.circle.id


def test_doctor_sees_only_own_visits(client, world):
    colleague = f.make_user(world.circle, "doctor")
    mine = _visit(world)
    theirs = _visit(world, doctor=colleague)
    headers = world.headers["doctor"]
    assert client.get(f"{API}/visits/{mine.id}", headers=headers).status_code == 200
    before = counts()
    for method, path, body in (
        ("get", f"{API}/visits/{theirs.id}", None),
        ("post", f"{API}/visits/{theirs.id}/check-in", {}),
        ("post", f"{API}/visits/{theirs.id}/check-out", {"note": "x"}),
        ("get", f"{API}/doctors/{colleague.id}/itinerary", None),
    ):
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == 404, (method, path)
    assert counts() == before
    listed = client.get(f"{API}/visits", headers=headers).get_json()
    assert [v["id"] for v in listed["items"]] == [mine.id]
    filtered = client.get(f"{API}/visits?doctor_id={colleague.id}", headers=headers).get_json()
    assert filtered["items"] == []


def test_other_circle_is_not_found(client, world, other_world):
    visit = make_visit(other_world.zone, "assigned", other_world.doctor, utcnow())
    before = counts()
    for role, method, path, body in (
        ("admin", "get", f"{API}/visits/{visit.id}", None),
        ("dispatcher", "post", f"{API}/visits/{visit.id}/assign", {"doctor_id": world.doctor.id}),
        ("coordinator", "post", f"{API}/visits/{visit.id}/cancel", {"reason": "x"}),
        ("doctor", "post", f"{API}/visits/{visit.id}/check-in", {}),
        ("dispatcher", "get", f"{API}/doctors/{other_world.doctor.id}/itinerary", None),
    ):
        kwargs: dict[str, Any] = {"headers": world.headers[role]}
        if body is not None:
            kwargs["json"] = body
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == 404, (role, method, path, response.get_json())
    assert counts() == before
    assert client.get(f"{API}/visits", headers=world.headers["admin"]).get_json()["items"] == []


def test_invisible_visit_is_404_whatever_the_body(client, world, other_world):
    theirs = make_visit(other_world.zone, "assigned", other_world.doctor, utcnow())
    colleague_visit = _visit(world, doctor=f.make_user(world.circle, "doctor"))
    before = counts()
    for role, visit, route, body in (
        ("dispatcher", theirs, "assign", {"doctor_id": "x"}),
        ("coordinator", theirs, "cancel", {}),
        ("doctor", theirs, "check-in", {"location": "nowhere"}),
        ("doctor", colleague_visit, "check-out", {"note": 5}),
    ):
        response = client.post(
            f"{API}/visits/{visit.id}/{route}", json=body, headers=world.headers[role]
        )
        assert response.status_code == 404, (role, route, response.get_json())
        assert response.get_json()["error"]["code"] == "visit_not_found"
    assert counts() == before


def test_unknown_and_huge_ids_are_404(client, world):
    headers = world.headers["dispatcher"]
    for path in (
        f"{API}/visits/424242",
        f"{API}/visits/{2**70}",
        f"{API}/doctors/{2**40}/itinerary",
    ):
        assert client.get(path, headers=headers).status_code == 404, path
    response = client.post(f"{API}/visits/{2**70}/cancel", json={"reason": "x"}, headers=headers)
    assert response.status_code == 404


def test_list_filters_and_logs_each_visit_read(client, world, doctors):
    now = utcnow()
    zone2 = f.make_zone(world.circle, "Est")
    a = make_visit(world.zone, "assigned", world.doctor, now - timedelta(hours=3))
    b = make_visit(world.zone, "on_site", doctors[0], now - timedelta(hours=2))
    c = make_visit(zone2, "completed", doctors[0], now - timedelta(hours=1))
    d = make_visit(world.zone, "cancelled", world.doctor, now - timedelta(days=3))
    headers = world.headers["dispatcher"]

    def ids(query: str) -> list[int]:
        response = client.get(f"{API}/visits{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return [v["id"] for v in response.get_json()["items"]]

    assert ids("") == [c.id, b.id, a.id, d.id]  # newest first
    assert ids(f"?doctor_id={doctors[0].id}") == [c.id, b.id]
    assert ids(f"?zone_id={zone2.id}") == [c.id]
    assert ids("?status=assigned") == [a.id]
    assert ids("?status=assigned&status=on_site") == [b.id, a.id]
    start = (now - timedelta(days=1)).isoformat()
    assert ids(f"?start={start.replace('+', '%2B')}") == [c.id, b.id, a.id]
    end = (now - timedelta(minutes=150)).isoformat().replace("+", "%2B")
    assert ids(f"?end={end}") == [a.id, d.id]
    assert ids("?limit=2") == [c.id, b.id]
    logged = [(r.subject_id, r.action) for r in _access_rows(world.dispatcher.id)]
    assert (c.id, "list") in logged
    assert (d.id, "list") in logged


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=many", "limit"),
        ("offset=-1", "offset"),
        ("offset=1.5", "offset"),
        ("offset=1000001", "offset"),
        ("start=yesterday", "start"),
        ("start=0001-01-01T00:00:00", "start"),
        ("doctor_id=abc", "doctor_id"),
        ("zone_id=0", "zone_id"),
        ("start=2030-01-02T00:00:00%2B00:00&end=2030-01-01T00:00:00%2B00:00", "end"),
    ],
)
def test_list_bad_query_names_the_field(client, world, query, field):
    before = counts()
    response = client.get(f"{API}/visits?{query}", headers=world.headers["dispatcher"])
    assert response.status_code == 422, response.get_json()
    assert has_field(response.get_json()["error"]["fields"], field)
    assert counts() == before


# --------------------------------------------------------------------------- state changes


def test_assign_cancel_check_in_and_out_over_http(client, world):
    visit = _visit(world, "unassigned")
    other = f.make_user(world.circle, "doctor")
    path = f"{API}/visits/{visit.id}"
    response = client.post(
        f"{path}/assign", json={"doctor_id": other.id}, headers=world.headers["dispatcher"]
    )
    assert response.status_code == 200
    assert response.get_json()["doctor_id"] == other.id
    response = client.post(
        f"{path}/assign",
        json={"doctor_id": world.doctor.id, "reason": "Closer"},
        headers=world.headers["coordinator"],
    )
    assert response.get_json()["doctor_name"] == world.doctor.name
    response = client.post(
        f"{path}/check-in",
        json={"location": {"lat": 50.8, "lon": 4.4, "accuracy": 8}},
        headers=world.headers["doctor"],
    )
    assert response.status_code == 200
    assert response.get_json()["status"] == "on_site"
    assert response.get_json()["last_location"]["lat"] == 50.8
    response = client.post(f"{path}/cancel", json={"reason": "x"}, headers=world.headers["admin"])
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "visit_not_cancellable"
    response = client.post(
        f"{path}/check-out", json={"note": "All fine"}, headers=world.headers["doctor"]
    )
    assert response.status_code == 200
    assert response.get_json()["outcome_note"] == "All fine"
    response = client.post(f"{path}/check-in", headers=world.headers["doctor"])
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "visit_not_checkinable"
    detail = client.get(path, headers=world.headers["dispatcher"]).get_json()
    assert [e["kind"] for e in detail["timeline"] if e["kind"].startswith("visit.")] == [
        "visit.assigned",
        "visit.reassigned",
        "visit.checked_in",
        "visit.checked_out",
    ]


def test_check_in_without_a_body_is_accepted(client, world):
    visit = _visit(world)
    response = client.post(f"{API}/visits/{visit.id}/check-in", headers=world.headers["doctor"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["last_location"] is None


def test_check_in_to_a_cancelled_visit_is_409_over_http(client, world):
    visit = _visit(world, "cancelled")
    response = client.post(
        f"{API}/visits/{visit.id}/check-in", json={}, headers=world.headers["doctor"]
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "visit_not_checkinable"


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("assign", {}, "doctor_id"),
        ("assign", {"doctor_id": "me"}, "doctor_id"),
        ("assign", {"doctor_id": None}, "reason"),
        ("assign", {"doctor_id": None, "reason": ""}, "reason"),
        ("assign", {"doctor_id": None, "reason": "x" * 201}, "reason"),
        ("assign", {"doctor_id": 2**40}, "doctor_id"),
        ("assign", {"doctor_id": 1, "priority": 1}, "priority"),
        ("cancel", {}, "reason"),
        ("cancel", {"reason": ""}, "reason"),
        ("cancel", {"reason": "   "}, "reason"),
        ("cancel", {"reason": 5}, "reason"),
    ],
)
def test_assign_and_cancel_bad_input(client, world, route, body, field):
    visit = _visit(world)
    before = counts()
    response = client.post(
        f"{API}/visits/{visit.id}/{route}", json=body, headers=world.headers["dispatcher"]
    )
    assert response.status_code == 422, response.get_json()
    assert has_field(response.get_json()["error"]["fields"], field)
    assert counts() == before


def test_assign_to_a_non_doctor_is_422(client, world):
    visit = _visit(world)
    before = counts()
    response = client.post(
        f"{API}/visits/{visit.id}/assign",
        json={"doctor_id": world.coordinator.id},
        headers=world.headers["dispatcher"],
    )
    assert response.status_code == 422
    assert "doctor_id" in response.get_json()["error"]["fields"]
    assert counts() == before


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("check-in", {"location": {"lat": 91, "lon": 0}}, "location.lat"),
        ("check-in", {"location": {"lat": 0, "lon": 181}}, "location.lon"),
        ("check-in", {"location": {"lat": 0, "lon": 0, "accuracy": -2}}, "location.accuracy"),
        ("check-in", {"location": {"lon": 0}}, "location.lat"),
        ("check-in", {"location": "here"}, "location"),
        ("check-in", {"code": "1234"}, "code"),
        ("check-out", {"note": "x" * 4001}, "note"),
        ("check-out", {"location": {"lat": "north", "lon": 0}}, "location.lat"),
    ],
)
def test_check_in_and_out_bad_input(client, world, route, body, field):
    visit = _visit(world, "assigned" if route == "check-in" else "on_site")
    before = counts()
    response = client.post(
        f"{API}/visits/{visit.id}/{route}", json=body, headers=world.headers["doctor"]
    )
    assert response.status_code == 422, response.get_json()
    assert has_field(response.get_json()["error"]["fields"], field)
    assert counts() == before


# --------------------------------------------------------------------------- itinerary


def test_itinerary_is_chronological_for_the_current_shift(client, world, doctors):
    now = utcnow()
    shift = on_shift(world.zone, world.doctor, now, started=timedelta(hours=4))
    before_shift = make_visit(world.zone, "completed", world.doctor, now - timedelta(hours=6))
    # Ordered by check-in time, else arrive_by, else creation.
    done = make_visit(
        world.zone, "completed", world.doctor, now - timedelta(hours=3),
        checked_in_at=now - timedelta(hours=2, minutes=30),
    )  # fmt: skip
    cancelled = make_visit(world.zone, "cancelled", world.doctor, now - timedelta(hours=2))
    next_one = make_visit(
        world.zone, "assigned", world.doctor, now - timedelta(hours=1),
        arrive_by=now + timedelta(minutes=20),
    )  # fmt: skip
    on_site = make_visit(
        world.zone, "on_site", world.doctor, now - timedelta(minutes=50),
        checked_in_at=now - timedelta(minutes=10),
    )  # fmt: skip
    carried_over = make_visit(world.zone, "assigned", world.doctor, now - timedelta(hours=20))
    theirs = make_visit(world.zone, "assigned", doctors[0], now - timedelta(minutes=30))

    response = client.get(
        f"{API}/doctors/{world.doctor.id}/itinerary", headers=world.headers["coordinator"]
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    ids = [v["id"] for v in body["visits"]]
    assert ids == [carried_over.id, done.id, cancelled.id, on_site.id, next_one.id]
    assert before_shift.id not in ids
    assert theirs.id not in ids
    assert body["doctor_id"] == world.doctor.id
    assert body["shift"]["id"] == shift.id
    assert body["start"] == shift.starts_at.isoformat()
    states = {v["id"]: v["status"] for v in body["visits"]}
    assert states[cancelled.id] == "cancelled"
    assert body["visits"][1]["checked_in_at"] is not None
    assert body["visits"][0]["address"]["street"] == "Rue Haute"
    logged = [r.subject_id for r in _access_rows(world.coordinator.id) if r.action == "itinerary"]
    assert sorted(logged) == sorted(ids)


def test_itinerary_without_a_shift_covers_the_last_12_hours(client, world):
    now = utcnow()
    recent = make_visit(world.zone, "completed", world.doctor, now - timedelta(hours=11))
    old = make_visit(world.zone, "completed", world.doctor, now - timedelta(hours=13))
    response = client.get(
        f"{API}/doctors/{world.doctor.id}/itinerary", headers=world.headers["doctor"]
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["shift"] is None
    assert [v["id"] for v in body["visits"]] == [recent.id]
    assert old.id != recent.id


def test_itinerary_explicit_window(client, world):
    now = utcnow()
    old = make_visit(world.zone, "completed", world.doctor, now - timedelta(days=2))
    make_visit(world.zone, "completed", world.doctor, now - timedelta(hours=1))
    start = (now - timedelta(days=3)).isoformat().replace("+", "%2B")
    end = (now - timedelta(days=1)).isoformat().replace("+", "%2B")
    response = client.get(
        f"{API}/doctors/{world.doctor.id}/itinerary?start={start}&end={end}",
        headers=world.headers["dispatcher"],
    )
    assert response.status_code == 200
    assert [v["id"] for v in response.get_json()["visits"]] == [old.id]
    response = client.get(
        f"{API}/doctors/{world.doctor.id}/itinerary?start={end}&end={start}",
        headers=world.headers["dispatcher"],
    )
    assert response.status_code == 422
    assert "end" in response.get_json()["error"]["fields"]


def test_itinerary_of_a_user_who_is_not_a_doctor_is_404(client, world):
    response = client.get(
        f"{API}/doctors/{world.dispatcher.id}/itinerary", headers=world.headers["admin"]
    )
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "doctor_not_found"
