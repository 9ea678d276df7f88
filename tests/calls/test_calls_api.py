"""Calls logged and edited by dispatchers; listing, reading, roles and tenancy."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from oncall.calls import services
from oncall.calls.models import OUTCOMES, Call, Caller
from oncall.core.clock import utcnow
from oncall.core.timeline import AccessLogEntry, TimelineEvent
from oncall.errors import ValidationFailed
from oncall.extensions import db
from tests import factories as f
from tests.calls.helpers import counts, make_visit, post_event

CALLS = "/api/v1/calls"

FULL = {
    "caller_number": "0470 12 34 56",
    "caller_name": "Marie Dupont",
    "line": "main",
    "patient": {
        "name": "Jean Dupont",
        "age": 82,
        "phone": "02/524.98.89",
        "usual_gp": "Dr Martin",
    },
    "address": {
        "street": "Rue de la Loi",
        "number": "16",
        "box": "3",
        "postcode": "1000",
        "city": "Bruxelles",
        "floor": "2",
        "access_notes": "Code porte 1234",
        "dwelling": "flat",
    },
    "preparation": {
        "caller_relation": "family",
        "caller_at_patient_home": True,
        "new_patient": False,
        "dogs_secured": True,
        "outside_light_on": True,
        "met_at_entrance": True,
        "third_person_present": False,
    },
    "reason": "Fièvre depuis hier",
    "identity_verified": True,
    "outcome": "home_visit",
    "note": "Rappeler si besoin",
}


def _create(client: Any, headers: dict[str, str], data: dict[str, Any] | None = None) -> Any:
    return client.post(CALLS, json=FULL if data is None else data, headers=headers)


def _timeline(call_id: int) -> list[TimelineEvent]:
    return list(
        db.session.scalars(
            select(TimelineEvent)
            .where(TimelineEvent.subject_type == "call", TimelineEvent.subject_id == call_id)
            .order_by(TimelineEvent.id)
        )
    )


# --- create -----------------------------------------------------------------------


def test_dispatcher_logs_a_call_by_hand(client, world) -> None:
    response = _create(client, world.headers["dispatcher"])
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["caller_number"] == "+32470123456"
    assert body["dispatcher_id"] == world.dispatcher.id
    assert body["state"] == "answered"
    assert body["call_ref"] is None
    assert body["patient"] == {
        "name": "Jean Dupont",
        "age": 82,
        "birth_date": None,
        "phone": "+3225249889",
        "usual_gp": "Dr Martin",
    }
    assert body["address"] == FULL["address"]
    assert body["preparation"] == FULL["preparation"]
    assert body["identity_verified"] is True
    assert body["identity_verified_at"] is not None
    assert body["outcome"] == "home_visit"
    assert body["visit_ids"] == []
    assert datetime.fromisoformat(body["created_at"]).utcoffset() == timedelta(0)
    caller = db.session.scalars(select(Caller)).one()
    assert (caller.number, caller.name, caller.circle_id) == (
        "+32470123456",
        "Marie Dupont",
        world.circle.id,
    )
    call = db.session.get(Call, body["id"])
    assert call.caller_id == caller.id
    kinds = [e.kind for e in _timeline(call.id)]
    assert kinds == ["call.created", "call.outcome_set", "call.identity_verified"]


def test_manual_call_reuses_the_caller_of_a_telephony_call(client, world) -> None:
    event = post_event(
        client,
        world.circle,
        {"call_ref": "t1", "event": "ringing", "caller_number": "+32470123456"},
    )
    telephony_call = db.session.get(Call, event.get_json()["call_id"])
    response = _create(client, world.headers["admin"], {"caller_number": "0470/12.34.56"})
    assert response.status_code == 201
    assert db.session.get(Call, response.get_json()["id"]).caller_id == telephony_call.caller_id
    assert counts()["callers"] == 1


def test_minimal_call_and_ended_call(client, world) -> None:
    minimal = _create(client, world.headers["dispatcher"], {})
    assert minimal.status_code == 201
    assert minimal.get_json()["caller_number"] is None
    ended = _create(
        client,
        world.headers["dispatcher"],
        {
            "answered_at": (utcnow() - timedelta(minutes=10)).isoformat(),
            "ended_at": utcnow().isoformat(),
        },
    )
    assert ended.status_code == 201
    assert ended.get_json()["state"] == "ended"
    assert counts()["callers"] == 0


def test_schema_errors_are_all_named_and_nothing_is_written(client, world) -> None:
    bad = {
        "caller_number": 470123456,
        "patient": {"age": 131, "birth_date": "not-a-date", "name": "x" * 161, "blood": "A+"},
        "address": {"dwelling": "castle", "city": "y" * 81},
        "preparation": {"caller_relation": "boss", "dogs_secured": "perhaps"},
        "reason": "r" * 4001,
        "outcome": "maybe",
        "note": "nul\u0000byte",
        "identity_verified": "sometimes",
        "unexpected": 1,
    }
    response = _create(client, world.headers["dispatcher"], bad)
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) >= {
        "caller_number",
        "patient.age",
        "patient.birth_date",
        "patient.name",
        "patient.blood",
        "address.dwelling",
        "address.city",
        "preparation.caller_relation",
        "preparation.dogs_secured",
        "reason",
        "outcome",
        "note",
        "identity_verified",
        "unexpected",
    }
    assert counts() == {k: 0 for k in counts()}


def test_rule_errors_are_all_named_and_nothing_is_written(client, world) -> None:
    today = date.today()
    bad = {
        "caller_number": "abc",
        "patient": {
            "birth_date": (today + timedelta(days=2)).isoformat(),
            "phone": "123",  # the form of a number, too short to be one
        },
        "address": {"postcode": "123"},
        "answered_at": (utcnow() + timedelta(days=1)).isoformat(),
    }
    response = _create(client, world.headers["dispatcher"], bad)
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {
        "caller_number",
        "patient.birth_date",
        "patient.phone",
        "address.postcode",
        "answered_at",
    }
    assert counts() == {k: 0 for k in counts()}


def test_age_and_birth_date_must_agree(client, world) -> None:
    birth = date(1950, 6, 15)
    now = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)
    with pytest.raises(ValidationFailed) as caught:
        services.create_call(world.dispatcher, {"patient": {"age": 40, "birth_date": birth}}, now)
    assert set(caught.value.fields) == {"patient.age", "patient.birth_date"}
    created = services.create_call(
        world.dispatcher, {"patient": {"age": 74, "birth_date": birth}}, now
    )
    assert created["patient"]["age"] == 74
    with pytest.raises(ValidationFailed) as caught:
        services.create_call(world.dispatcher, {"patient": {"birth_date": date(1890, 1, 1)}}, now)
    assert "patient.birth_date" in caught.value.fields
    assert counts()["calls"] == 1


def test_the_service_checks_nested_details_without_the_api(client, world) -> None:
    bad = {
        "patient": {"age": "old", "shoe": 42},
        "address": "Rue Haute 12",
        "preparation": {"dogs_secured": "perhaps"},
    }
    with pytest.raises(ValidationFailed) as caught:
        services.create_call(world.dispatcher, bad, datetime(2025, 1, 10, 12, 0, tzinfo=UTC))
    assert set(caught.value.fields) == {
        "patient.age",
        "patient.shoe",
        "address",
        "preparation.dogs_secured",
    }
    assert counts() == {k: 0 for k in counts()}


@pytest.mark.parametrize(
    ("country", "good", "bad"),
    [("BE", "1000", "75001"), ("FR", "75001", "1000")],
)
def test_postcode_follows_the_circle_country(client, db, country, good, bad) -> None:
    circle = f.make_circle(f"Cercle {country}", country=country)
    headers = f.auth(f.make_user(circle, "dispatcher"))
    ok = client.post(CALLS, json={"address": {"postcode": good}}, headers=headers)
    assert ok.status_code == 201
    refused = client.post(CALLS, json={"address": {"postcode": bad}}, headers=headers)
    assert refused.status_code == 422
    assert list(refused.get_json()["error"]["fields"]) == ["address.postcode"]


def test_numbers_are_read_with_the_circle_country(client, db) -> None:
    circle = f.make_circle("Cercle FR", country="FR")
    headers = f.auth(f.make_user(circle, "dispatcher"))
    french = client.post(CALLS, json={"caller_number": "01 23 45 67 89"}, headers=headers)
    belgian = client.post(CALLS, json={"caller_number": "+32 2 524 98 89"}, headers=headers)
    assert french.get_json()["caller_number"] == "+33123456789"
    assert belgian.get_json()["caller_number"] == "+3225249889"


# --- outcome ---------------------------------------------------------------------


def test_the_six_outcomes() -> None:
    assert OUTCOMES == (
        "consultation_booked",
        "transferred_to_doctor",
        "home_visit",
        "redirected_112",
        "advice_line",
        "no_action",
    )


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_each_outcome_is_accepted(client, world, outcome) -> None:
    created = _create(client, world.headers["dispatcher"], {"outcome": outcome})
    assert created.status_code == 201
    assert created.get_json()["outcome"] == outcome


def test_outcome_change_records_old_and_new(client, world) -> None:
    call_id = _create(client, world.headers["dispatcher"], {}).get_json()["id"]
    first = client.patch(
        f"{CALLS}/{call_id}", json={"outcome": "advice_line"}, headers=world.headers["dispatcher"]
    )
    second = client.patch(
        f"{CALLS}/{call_id}", json={"outcome": "home_visit"}, headers=world.headers["admin"]
    )
    assert first.status_code == second.status_code == 200
    assert second.get_json()["outcome"] == "home_visit"
    events = {e.kind: e for e in _timeline(call_id)}
    assert events["call.outcome_set"].data == {"old": None, "new": "advice_line"}
    assert events["call.outcome_changed"].data == {"old": "advice_line", "new": "home_visit"}
    assert events["call.outcome_changed"].actor_id == world.admin.id
    refused = client.patch(
        f"{CALLS}/{call_id}", json={"outcome": "lost"}, headers=world.headers["dispatcher"]
    )
    assert refused.status_code == 422
    assert "outcome" in refused.get_json()["error"]["fields"]


# --- update ----------------------------------------------------------------------


def test_update_changes_only_what_is_sent(client, world) -> None:
    call_id = _create(client, world.headers["dispatcher"]).get_json()["id"]
    response = client.patch(
        f"{CALLS}/{call_id}",
        json={
            "patient": {"name": "Jean-Pierre Dupont"},
            "address": {"floor": "3", "access_notes": None},
            "preparation": {"dogs_secured": False},
            "caller_name": "Marie D.",
        },
        headers=world.headers["dispatcher"],
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["patient"]["name"] == "Jean-Pierre Dupont"
    assert body["patient"]["age"] == 82
    assert body["address"]["floor"] == "3"
    assert body["address"]["access_notes"] is None
    assert body["address"]["street"] == "Rue de la Loi"
    assert body["preparation"]["dogs_secured"] is False
    assert body["preparation"]["outside_light_on"] is True
    assert body["caller_name"] == "Marie D."
    assert db.session.scalars(select(Caller)).one().name == "Marie D."
    updated = [e for e in _timeline(call_id) if e.kind == "call.updated"]
    assert updated[-1].data["fields"] == [
        "address.access_notes",
        "address.floor",
        "caller_name",
        "patient.name",
        "preparation.dogs_secured",
    ]


def test_identity_verification_sets_and_clears_its_time(client, world) -> None:
    call_id = _create(client, world.headers["dispatcher"], {}).get_json()["id"]
    verified = client.patch(
        f"{CALLS}/{call_id}", json={"identity_verified": True}, headers=world.headers["dispatcher"]
    )
    assert verified.get_json()["identity_verified"] is True
    assert verified.get_json()["identity_verified_at"] is not None
    cleared = client.patch(
        f"{CALLS}/{call_id}", json={"identity_verified": False}, headers=world.headers["dispatcher"]
    )
    assert cleared.get_json()["identity_verified"] is False
    assert cleared.get_json()["identity_verified_at"] is None


def test_invalid_update_changes_nothing(client, world) -> None:
    call_id = _create(client, world.headers["dispatcher"]).get_json()["id"]
    db.session.expire_all()
    before = counts()
    call = db.session.get(Call, call_id)
    snapshot = (call.patient_name, call.address_postcode, call.updated_at, call.outcome)
    response = client.patch(
        f"{CALLS}/{call_id}",
        json={
            "patient": {"name": "Autre", "age": 30},
            "address": {"postcode": "10"},
            "outcome": "no_action",
        },
        headers=world.headers["dispatcher"],
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["address.postcode"]
    assert counts() == before
    call = db.session.get(Call, call_id)
    assert (call.patient_name, call.address_postcode, call.updated_at, call.outcome) == snapshot


def test_update_checks_age_against_the_stored_birth_date(client, world) -> None:
    now = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)
    created = services.create_call(
        world.dispatcher, {"patient": {"birth_date": date(1950, 6, 15)}}, now
    )
    with pytest.raises(ValidationFailed) as caught:
        services.update_call(world.dispatcher, created["id"], {"patient": {"age": 50}}, now)
    assert list(caught.value.fields) == ["patient.age"]
    updated = services.update_call(world.dispatcher, created["id"], {"patient": {"age": 74}}, now)
    assert updated["patient"]["age"] == 74


# --- read, list ------------------------------------------------------------------


def test_get_writes_the_access_log_and_shows_visits(client, world) -> None:
    call_id = _create(client, world.headers["dispatcher"]).get_json()["id"]
    visit = make_visit(db.session.get(Call, call_id), world.zone)
    response = client.get(f"{CALLS}/{call_id}", headers=world.headers["coordinator"])
    assert response.status_code == 200
    assert response.get_json()["visit_ids"] == [visit.id]
    entry = db.session.scalars(select(AccessLogEntry)).one()
    assert (entry.user_id, entry.subject_type, entry.subject_id, entry.action) == (
        world.coordinator.id,
        "call",
        call_id,
        "read",
    )


def test_list_is_newest_first_and_filters(client, world) -> None:
    base = datetime(2025, 1, 10, 19, 0, tzinfo=UTC)
    ids = []
    for i, (number, outcome) in enumerate(
        [
            ("0470123456", "advice_line"),
            ("02 524 98 89", "home_visit"),
            ("0470 12 34 56", "home_visit"),
        ]
    ):
        created = services.create_call(
            world.dispatcher,
            {"caller_number": number, "outcome": outcome},
            base + timedelta(hours=i),
        )
        ids.append(created["id"])
    headers = world.headers["dispatcher"]
    everything = client.get(CALLS, headers=headers).get_json()
    assert [c["id"] for c in everything["items"]] == ids[::-1]
    assert everything["next_offset"] is None
    by_number = client.get(
        CALLS, query_string={"number": "+32 470 12 34 56"}, headers=headers
    ).get_json()
    assert [c["id"] for c in by_number["items"]] == [ids[2], ids[0]]
    by_outcome = client.get(
        CALLS, query_string={"outcome": "home_visit"}, headers=headers
    ).get_json()
    assert [c["id"] for c in by_outcome["items"]] == [ids[2], ids[1]]
    # Naive times are Brussels time (UTC+1 in January): 21:00 local is 20:00 UTC.
    period = client.get(
        CALLS,
        query_string={"start": "2025-01-10T21:00:00", "end": "2025-01-10T21:00:01Z"},
        headers=headers,
    ).get_json()
    assert [c["id"] for c in period["items"]] == [ids[2], ids[1]]
    page = client.get(CALLS, query_string={"limit": 2}, headers=headers).get_json()
    assert [c["id"] for c in page["items"]] == [ids[2], ids[1]]
    assert page["next_offset"] == 2
    rest = client.get(CALLS, query_string={"limit": 2, "offset": 2}, headers=headers).get_json()
    assert [c["id"] for c in rest["items"]] == [ids[0]]
    assert rest["next_offset"] is None
    logged = db.session.scalars(select(AccessLogEntry).where(AccessLogEntry.action == "list")).all()
    assert len(logged) == 6


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 201}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"outcome": "maybe"}, "outcome"),
        ({"number": "abc"}, "number"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2025-01-10T10:00:00Z", "end": "2025-01-10T09:00:00Z"}, "end"),
        ({"start": "2025-03-30T02:30:00"}, "start"),
    ],
)
def test_list_rejects_bad_filters(client, world, query, field) -> None:
    response = client.get(CALLS, query_string=query, headers=world.headers["dispatcher"])
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def test_page_size_is_capped_at_200(db, world) -> None:
    with pytest.raises(ValidationFailed):
        services.list_calls(world.dispatcher, utcnow(), limit=201)


# --- tenancy and roles -------------------------------------------------------------


def test_another_circles_call_is_not_found(client, world, other_world) -> None:
    call_id = _create(client, world.headers["dispatcher"]).get_json()["id"]
    other = other_world.headers["dispatcher"]
    assert client.get(f"{CALLS}/{call_id}", headers=other).status_code == 404
    patched = client.patch(f"{CALLS}/{call_id}", json={"note": "x"}, headers=other)
    assert patched.status_code == 404
    assert client.get(CALLS, headers=other).get_json()["items"] == []
    assert db.session.get(Call, call_id).note == FULL["note"]
    assert (
        client.get(f"{CALLS}/99999999999999999999", headers=world.headers["dispatcher"]).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("role", "method", "path", "allowed"),
    [
        ("doctor", "get", "", False),
        ("doctor", "post", "", False),
        ("doctor", "get", "/{id}", False),
        ("doctor", "patch", "/{id}", False),
        ("coordinator", "get", "", True),
        ("coordinator", "get", "/{id}", True),
        ("coordinator", "post", "", False),
        ("coordinator", "patch", "/{id}", False),
        ("admin", "get", "", True),
        ("admin", "post", "", True),
        ("admin", "patch", "/{id}", True),
        ("dispatcher", "patch", "/{id}", True),
    ],
)
def test_roles(client, world, role, method, path, allowed) -> None:
    call_id = _create(client, world.headers["dispatcher"], {}).get_json()["id"]
    url = CALLS + path.format(id=call_id)
    kwargs: dict[str, Any] = {"headers": world.headers[role]}
    if method in {"post", "patch"}:
        kwargs["json"] = {"note": "n"}
    response = getattr(client, method)(url, **kwargs)
    if allowed:
        assert response.status_code in {200, 201}
    else:
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "role_forbidden"


def test_service_refuses_a_doctor_too(db, world) -> None:
    from oncall.errors import Forbidden

    with pytest.raises(Forbidden):
        services.create_call(world.doctor, {}, utcnow())
    with pytest.raises(Forbidden):
        services.list_calls(world.doctor, utcnow())


def test_unauthenticated_is_401(client, world) -> None:
    assert client.get(CALLS).status_code == 401
    assert client.post(CALLS, json={}).status_code == 401


# --- no patient data in logs -------------------------------------------------------


def test_patient_data_and_numbers_stay_out_of_the_logs(client, world, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    name = "Zéphyrine Quaglioni"
    data = {
        **FULL,
        "caller_number": "0475 98 76 54",
        "caller_name": "Octave Brabançon",
        "patient": {**FULL["patient"], "name": name, "phone": "0476 11 22 33"},
    }
    call_id = _create(client, world.headers["dispatcher"], data).get_json()["id"]
    client.get(f"{CALLS}/{call_id}", headers=world.headers["dispatcher"])
    client.patch(
        f"{CALLS}/{call_id}",
        json={"patient": {"name": name + " II"}},
        headers=world.headers["dispatcher"],
    )
    client.get(CALLS, headers=world.headers["dispatcher"])
    client.get("/api/v1/callers/%2B32475987654", headers=world.headers["dispatcher"])
    post_event(
        client,
        world.circle,
        {"call_ref": "log-1", "event": "ringing", "caller_number": "0475 98 76 54"},
    )
    post_event(
        client, world.circle, {"call_ref": "log-2", "event": "ringing", "caller_number": "0499"}
    )
    assert caplog.records, "expected the service to log something"
    text = caplog.text
    for secret in (
        "Zéphyrine",
        "Quaglioni",
        "Octave",
        "Brabançon",
        "Rue de la Loi",
        "Code porte",
        "+32475987654",
        "0475 98 76 54",
        "475987654",
        "476112233",
        "0499",
    ):
        assert secret not in text


def test_services_refuse_an_unknown_outcome_without_the_http_schema(world, db):
    """The service checks the outcome itself: callers that skip the API schema
    (the command line, the demo, later workers) cannot store a wrong value."""
    from oncall.calls import services
    from oncall.calls.models import Call
    from oncall.core.clock import utcnow
    from oncall.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as err:
        services.create_call(world.dispatcher, {"outcome": "sent_flowers"}, utcnow())
    assert "outcome" in err.value.fields
    assert db.session.query(Call).count() == 0
    created = services.create_call(world.dispatcher, {"reason": "fever"}, utcnow())
    with pytest.raises(ValidationFailed) as err:
        services.update_call(world.dispatcher, created["id"], {"outcome": "x"}, utcnow())
    assert "outcome" in err.value.fields
    assert db.session.get(Call, created["id"]).outcome is None
