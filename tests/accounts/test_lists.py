"""Lists of users and tokens: one paged collection shape, paging combined with filters.

Also the shared paging helpers and the OpenAPI description of every paged list of
the accounts, circles, rota and calls domains.
"""

from __future__ import annotations

import warnings

import pytest
from apiflask import Schema
from apiflask.fields import Integer

from oncall.accounts import services
from oncall.accounts.schemas import UserOut
from oncall.core.paging import MAX_LIMIT, PageQuery, envelope, envelope_schema, page_query_schema
from oncall.errors import ValidationFailed
from tests import factories as f
from tests.conftest import World

USERS = "/api/v1/users"
TOKENS = "/api/v1/auth/tokens"
PAGE_KEYS = {"items", "limit", "offset", "next_offset"}

#: Every paged list of these domains and an allowed role.
LISTS = [
    ("/api/v1/users", "admin"),
    ("/api/v1/auth/tokens", "doctor"),
    ("/api/v1/zones", "doctor"),
    ("/api/v1/police-contacts", "dispatcher"),
    ("/api/v1/escalation-policies", "coordinator"),
    ("/api/v1/shifts", "doctor"),
    ("/api/v1/calls", "dispatcher"),
]


def names(client, headers, **query) -> list[str]:
    response = client.get(USERS, query_string=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    return [u["name"] for u in response.get_json()["items"]]


# --- users -----------------------------------------------------------------------------


def test_users_are_paged_by_name_with_the_id_as_tie_break(client, world: World):
    twins = [f.make_user(world.circle, "doctor", name="Dr Twin") for _ in range(2)]
    headers = world.headers["coordinator"]
    everyone = client.get(USERS, headers=headers).get_json()
    assert set(everyone) == PAGE_KEYS
    assert (everyone["limit"], everyone["offset"], everyone["next_offset"]) == (50, 0, None)
    ordered = [u["id"] for u in everyone["items"]]
    assert len(ordered) == 6
    assert ordered.index(twins[0].id) + 1 == ordered.index(twins[1].id)

    pages, offset = [], 0
    while offset is not None:
        page = client.get(USERS, query_string={"limit": 4, "offset": offset},
                          headers=headers).get_json()
        assert len(page["items"]) <= 4
        pages.append(page)
        offset = page["next_offset"]
    assert [p["next_offset"] for p in pages] == [4, None]
    assert [u["id"] for p in pages for u in p["items"]] == ordered


def test_a_full_last_page_has_no_next_offset(client, world: World):
    headers = world.headers["admin"]
    page = client.get(USERS, query_string={"limit": 4}, headers=headers).get_json()
    assert len(page["items"]) == 4
    assert page["next_offset"] is None
    page = client.get(USERS, query_string={"limit": 3}, headers=headers).get_json()
    assert page["next_offset"] == 3


def test_user_filters_combine_with_paging(client, world: World):
    second = f.make_user(world.circle, "doctor", name="Zed Doctor")
    f.make_user(world.circle, "doctor", name="Aaron Retired", active=False)
    headers = world.headers["admin"]
    first = client.get(USERS, query_string={"role": "doctor", "active": "true", "limit": 1},
                       headers=headers).get_json()
    assert [u["id"] for u in first["items"]] == [world.doctor.id]
    assert first["next_offset"] == 1
    rest = client.get(
        USERS,
        query_string={"role": "doctor", "active": "true", "limit": 1, "offset": 1},
        headers=headers,
    ).get_json()
    assert [u["id"] for u in rest["items"]] == [second.id]
    assert rest["next_offset"] is None
    assert names(client, headers, role="doctor", active="false") == ["Aaron Retired"]


@pytest.mark.parametrize("path", [USERS, TOKENS])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": MAX_LIMIT + 1}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
def test_a_bad_page_is_named(client, world: World, path: str, query, field: str):
    response = client.get(path, query_string=query, headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {field}


def test_services_check_the_page_too(db, world: World):
    with pytest.raises(ValidationFailed) as err:
        services.list_users(world.admin, limit=MAX_LIMIT + 1, offset=-1)
    assert set(err.value.fields) == {"limit", "offset"}
    with pytest.raises(ValidationFailed) as err:
        services.list_tokens(world.admin, limit=0)
    assert set(err.value.fields) == {"limit"}


# --- tokens ----------------------------------------------------------------------------


def test_tokens_are_paged_newest_first(client, world: World):
    for _ in range(2):
        f.token_for(world.doctor)
    headers = world.headers["doctor"]  # a third token, the newest
    everything = client.get(TOKENS, headers=headers).get_json()["items"]
    assert len(everything) == 3
    first = client.get(TOKENS, query_string={"limit": 2}, headers=headers).get_json()
    assert [t["id"] for t in first["items"]] == [t["id"] for t in everything[:2]]
    assert first["next_offset"] == 2
    admin = client.get(
        TOKENS,
        query_string={"user_id": world.doctor.id, "limit": 2, "offset": 2},
        headers=world.headers["admin"],
    ).get_json()
    assert [t["id"] for t in admin["items"]] == [everything[2]["id"]]
    assert admin["next_offset"] is None


# --- the shared helpers ----------------------------------------------------------------


def test_envelope_cuts_the_extra_row():
    assert envelope([1, 2, 3], 2, 4) == {"items": [1, 2], "limit": 2, "offset": 4,
                                          "next_offset": 6}
    assert envelope([1, 2], 2, 0)["next_offset"] is None
    assert envelope([], 2, 10) == {"items": [], "limit": 2, "offset": 10, "next_offset": None}


def test_page_query_defaults_and_bounds():
    assert page_query_schema() is PageQuery
    assert PageQuery().load({}) == {"limit": 50, "offset": 0}
    assert PageQuery().load({"limit": "200", "offset": "7"}) == {"limit": 200, "offset": 7}
    assert set(PageQuery().validate({"limit": "201", "offset": "-1"})) == {"limit", "offset"}


def test_envelope_schema_is_one_class_per_name():
    assert envelope_schema(UserOut, "UserPage") is envelope_schema(UserOut, "UserPage")

    class Other(Schema):
        id = Integer()

    with pytest.raises(ValueError, match="UserPage"):
        envelope_schema(Other, "UserPage")


# --- the OpenAPI document --------------------------------------------------------------


@pytest.mark.parametrize(("path", "role"), LISTS)
def test_every_list_answers_and_documents_the_page(app, client, world: World, path, role):
    response = client.get(path, query_string={"limit": 1}, headers=world.headers[role])
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == PAGE_KEYS
    assert (body["limit"], body["offset"]) == (1, 0)

    spec = app.spec
    operation = spec["paths"][path]["get"]
    params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert {"limit", "offset"} <= set(params)
    assert params["limit"]["schema"]["maximum"] == MAX_LIMIT
    assert params["offset"]["schema"]["minimum"] == 0
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(page["properties"]) == PAGE_KEYS
    assert set(page["required"]) == PAGE_KEYS
    assert page["properties"]["next_offset"]["type"] == ["integer", "null"]


def test_pages_do_not_register_their_item_schema_twice(app):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = app.spec
    doubled = [str(w.message) for w in caught if "already been added" in str(w.message)]
    mine = ("accounts", "circles", "rota", "calls")
    assert not [m for m in doubled if any(f"oncall.{d}." in m for d in mine)]
    prefixes = ("User", "Token", "Zone", "PoliceContact", "Policy", "Shift", "Call")
    renamed = [name for name in spec["components"]["schemas"]
               if name.startswith(prefixes) and name[-1].isdigit()]
    assert not renamed
