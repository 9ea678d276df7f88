"""A caller's history: their calls and the visits created from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import select

from oncall.calls import services
from oncall.calls.models import Call
from oncall.core.timeline import AccessLogEntry
from oncall.extensions import db
from tests.calls.helpers import counts, make_visit, post_event

BASE = datetime(2025, 1, 10, 19, 0, tzinfo=UTC)


def _url(number: str) -> str:
    return "/api/v1/callers/" + quote(number, safe="")


@pytest.fixture
def history(db, world):
    """Two manual calls and one telephone call from one number, a visit on two of them."""
    first = services.create_call(
        world.dispatcher,
        {"caller_number": "0470 12 34 56", "caller_name": "Marie", "patient": {"name": "Jean"}},
        BASE,
    )
    second = services.create_call(
        world.dispatcher, {"caller_number": "+32470123456"}, BASE + timedelta(hours=1)
    )
    other = services.create_call(
        world.dispatcher, {"caller_number": "02 524 98 89"}, BASE + timedelta(hours=2)
    )
    old_visit = make_visit(
        db.session.get(Call, first["id"]), world.zone, created_at=BASE + timedelta(minutes=5)
    )
    new_visit = make_visit(
        db.session.get(Call, second["id"]),
        world.zone,
        status="completed",
        created_at=BASE + timedelta(hours=1, minutes=5),
    )
    make_visit(
        db.session.get(Call, other["id"]),
        world.zone,
        created_at=BASE + timedelta(hours=2, minutes=5),
    )
    return {
        "calls": [first["id"], second["id"]],
        "visits": [old_visit.id, new_visit.id],
        "other": other["id"],
    }


@pytest.mark.parametrize(
    "number",
    ["+32470123456", "+32 470 12 34 56", "0470 12 34 56", "0470/12.34.56", "0032470123456"],
)
def test_history_in_any_form_of_the_number(client, world, history, number) -> None:
    response = client.get(_url(number), headers=world.headers["dispatcher"])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["caller"]["number"] == "+32470123456"
    assert body["caller"]["name"] == "Marie"
    assert [c["id"] for c in body["calls"]] == history["calls"][::-1]
    assert [v["id"] for v in body["visits"]] == history["visits"][::-1]
    assert body["visits"][0]["status"] == "completed"
    assert body["visits"][1]["patient"]["name"] == "Jean"
    assert [c["visit_ids"] for c in body["calls"]] == [
        [history["visits"][1]],
        [history["visits"][0]],
    ]
    assert body["risk_flags"] == []


def test_history_with_a_slash_in_the_path(client, world, history) -> None:
    response = client.get("/api/v1/callers/02/524.98.89", headers=world.headers["coordinator"])
    assert response.status_code == 200
    assert [c["id"] for c in response.get_json()["calls"]] == [history["other"]]


def test_history_includes_telephony_calls(client, world) -> None:
    event = post_event(
        client, world.circle, {"call_ref": "r1", "event": "ringing", "caller_number": "0470123456"}
    )
    response = client.get(_url("+32470123456"), headers=world.headers["admin"])
    assert response.status_code == 200
    assert [c["id"] for c in response.get_json()["calls"]] == [event.get_json()["call_id"]]
    assert response.get_json()["visits"] == []


def test_history_writes_the_access_log(client, world, history) -> None:
    before = counts()["access_log"]
    client.get(_url("+32470123456"), headers=world.headers["coordinator"])
    entries = db.session.scalars(select(AccessLogEntry)).all()
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.user_id, entry.subject_type, entry.action, entry.circle_id) == (
        world.coordinator.id,
        "caller",
        "history",
        world.circle.id,
    )


def test_never_seen_number_is_404(client, world, history) -> None:
    response = client.get(_url("0475 12 34 56"), headers=world.headers["dispatcher"])
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "caller_not_found"
    assert counts()["access_log"] == 0


@pytest.mark.parametrize("number", ["abc", "12", "0470 12 34 5a", "+999123"])
def test_unreadable_number_is_422_naming_number(client, world, number) -> None:
    response = client.get(_url(number), headers=world.headers["dispatcher"])
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["number"]


def test_another_circles_caller_is_404(client, world, other_world, history) -> None:
    response = client.get(_url("+32470123456"), headers=other_world.headers["dispatcher"])
    assert response.status_code == 404
    assert counts()["access_log"] == 0


@pytest.mark.parametrize(
    ("role", "status"), [("doctor", 403), ("dispatcher", 200), ("coordinator", 200), ("admin", 200)]
)
def test_roles(client, world, history, role, status) -> None:
    assert client.get(_url("+32470123456"), headers=world.headers[role]).status_code == status


def test_unauthenticated_is_401(client, world, history) -> None:
    assert client.get(_url("+32470123456")).status_code == 401
