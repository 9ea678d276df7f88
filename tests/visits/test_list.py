"""The visit list answers one page object: ``{"items", "limit", "offset", "next_offset"}``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from oncall.core.clock import utcnow
from oncall.core.timeline import AccessLogEntry
from oncall.errors import ValidationFailed
from oncall.extensions import db
from oncall.visits import services
from tests.visits.conftest import NOW, counts, make_visit

API = "/api/v1/visits"


def _page(client: Any, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    response = client.get(f"{API}{query}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_list_is_an_object_with_defaults(client, world):
    visit = make_visit(world.zone, "assigned", world.doctor, utcnow())
    body = _page(client, world.headers["dispatcher"])
    assert set(body) == {"items", "limit", "offset", "next_offset"}
    assert (body["limit"], body["offset"], body["next_offset"]) == (50, 0, None)
    assert [v["id"] for v in body["items"]] == [visit.id]
    assert body["items"][0]["doctor_name"] == world.doctor.name


def test_pages_follow_each_other_newest_first_with_id_as_tie_break(client, world):
    now = utcnow()
    older = make_visit(world.zone, "completed", world.doctor, now - timedelta(hours=2))
    # Three visits created at the same instant: the higher id comes first.
    same = [
        make_visit(world.zone, "assigned", world.doctor, now - timedelta(hours=1)) for _ in range(3)
    ]
    newest = make_visit(world.zone, "unassigned", None, now)
    expected = [newest.id, same[2].id, same[1].id, same[0].id, older.id]
    headers = world.headers["coordinator"]

    seen: list[int] = []
    offsets: list[int | None] = []
    offset: int | None = 0
    while offset is not None:
        body = _page(client, headers, f"?limit=2&offset={offset}")
        assert (body["limit"], body["offset"]) == (2, offset)
        assert len(body["items"]) <= 2
        seen += [v["id"] for v in body["items"]]
        offset = body["next_offset"]
        offsets.append(offset)
    assert seen == expected
    assert offsets == [2, 4, None]


def test_a_full_last_page_has_no_next_offset(client, world):
    now = utcnow()
    for hours in range(4):
        make_visit(world.zone, "assigned", world.doctor, now - timedelta(hours=hours))
    headers = world.headers["admin"]
    assert _page(client, headers, "?limit=2")["next_offset"] == 2
    last = _page(client, headers, "?limit=2&offset=2")
    assert (len(last["items"]), last["next_offset"]) == (2, None)
    beyond = _page(client, headers, "?limit=2&offset=10")
    assert (beyond["items"], beyond["offset"], beyond["next_offset"]) == ([], 10, None)


def test_only_the_page_shown_is_written_to_the_access_log(client, world):
    now = utcnow()
    visits = [
        make_visit(world.zone, "assigned", world.doctor, now - timedelta(minutes=m))
        for m in range(3)
    ]
    body = _page(client, world.headers["dispatcher"], "?limit=1&offset=1")
    assert [v["id"] for v in body["items"]] == [visits[1].id]
    db.session.rollback()
    logged = db.session.scalars(
        select(AccessLogEntry.subject_id).where(
            AccessLogEntry.user_id == world.dispatcher.id, AccessLogEntry.action == "list"
        )
    ).all()
    assert logged == [visits[1].id]


def test_filters_combine_with_paging_for_a_doctor(client, world, doctors):
    now = utcnow()
    mine = [
        make_visit(world.zone, "assigned", world.doctor, now - timedelta(minutes=m))
        for m in range(3)
    ]
    make_visit(world.zone, "assigned", doctors[0], now)  # another doctor's: never listed
    body = _page(client, world.headers["doctor"], "?limit=2")
    assert [v["id"] for v in body["items"]] == [mine[0].id, mine[1].id]
    assert body["next_offset"] == 2
    body = _page(client, world.headers["doctor"], "?limit=2&offset=2")
    assert [v["id"] for v in body["items"]] == [mine[2].id]
    assert body["next_offset"] is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": True}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "2"}, "offset"),
    ],
)
def test_service_refuses_a_bad_page(world, kwargs, field):
    before = counts()
    with pytest.raises(ValidationFailed) as exc:
        services.list_visits(world.dispatcher, now=NOW, **kwargs)
    assert list(exc.value.fields) == [field]
    assert counts() == before


def test_openapi_describes_the_page_object(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"][API]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"items", "limit", "offset", "next_offset"}
    assert set(page["required"]) == {"items", "limit", "offset", "next_offset"}
    assert page["properties"]["items"]["type"] == "array"
    item_ref = page["properties"]["items"]["items"]["$ref"]
    item = spec["components"]["schemas"][item_ref.rsplit("/", 1)[1]]
    assert {"id", "status", "doctor_id", "patient", "address"} <= set(item["properties"])
    assert "null" in page["properties"]["next_offset"]["type"]
    params = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 200)
    assert params["limit"]["default"] == 50
    assert (params["offset"]["minimum"], params["offset"]["default"]) == (0, 0)
