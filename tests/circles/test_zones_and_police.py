"""Zones and police contacts: create, update, validation, roles and tenancy."""

from __future__ import annotations

import pytest

from oncall.circles import services
from oncall.circles.models import PoliceContact, Zone
from oncall.errors import ValidationFailed
from oncall.extensions import db
from tests import factories as f
from tests.conftest import World

ZONES = "/api/v1/zones"
CONTACTS = "/api/v1/police-contacts"


def test_zones_list_for_every_role_and_only_the_circle(client, world: World, other_world):
    f.make_zone(world.circle, "Est")
    for role in ("admin", "dispatcher", "coordinator", "doctor"):
        response = client.get(ZONES, headers=world.headers[role])
        assert response.status_code == 200
        assert [z["name"] for z in response.get_json()["items"]] == ["Est", "Nord"]


def test_admin_creates_and_updates_a_zone(client, world: World):
    response = client.post(ZONES, json={"name": " Sud ", "code": "S"},
                           headers=world.headers["admin"])
    assert response.status_code == 201
    zone = response.get_json()
    assert zone == {"id": zone["id"], "name": "Sud", "code": "S", "active": True}
    response = client.patch(f"{ZONES}/{zone['id']}", json={"name": "Sud-Ouest", "active": False},
                            headers=world.headers["admin"])
    assert response.status_code == 200
    assert response.get_json()["active"] is False


def test_zone_names_are_unique_in_the_circle(client, world: World, other_world: World):
    before = db.session.query(Zone).count()
    response = client.post(ZONES, json={"name": "nord"}, headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"name"}
    assert db.session.query(Zone).count() == before
    # The same name in another circle is fine.
    response = client.post(ZONES, json={"name": "Nord"}, headers=other_world.headers["admin"])
    assert response.status_code == 201
    other = f.make_zone(world.circle, "Centre")
    response = client.patch(f"{ZONES}/{other.id}", json={"name": "NORD"},
                            headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"name"}


def test_zone_fields_are_validated(client, world: World):
    response = client.post(ZONES, json={"name": "", "code": "x" * 33, "active": "maybe"},
                           headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"name", "code", "active"}
    response = client.post(ZONES, json={"name": "   "}, headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"name"}


def test_other_circles_zone_is_404(client, world: World, other_world: World):
    response = client.patch(f"{ZONES}/{world.zone.id}", json={"name": "Pris"},
                            headers=other_world.headers["admin"])
    assert response.status_code == 404
    db.session.expire_all()
    assert db.session.get(Zone, world.zone.id).name == "Nord"


@pytest.mark.parametrize("role", ["dispatcher", "coordinator", "doctor"])
def test_only_admins_write_zones(client, world: World, role: str):
    headers = world.headers[role]
    assert client.post(ZONES, json={"name": "Ouest"}, headers=headers).status_code == 403
    response = client.patch(f"{ZONES}/{world.zone.id}", json={"name": "X"}, headers=headers)
    assert response.status_code == 403
    assert db.session.query(Zone).filter_by(circle_id=world.circle.id).count() == 1


def test_admin_creates_a_police_contact(client, world: World):
    response = client.post(
        CONTACTS,
        json={
            "name": "Zone de police Namur-Capitale",
            "zone_id": world.zone.id,
            "phone": "081 24 66 00",
            "email": "Dispatch@Police.example",
            "webhook_url": "https://police.example/hooks/oncall",
            "protocol_reference": "Protocole 2024-07",
            "notes": "Call the dispatch desk first.",
        },
        headers=world.headers["admin"],
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["phone"] == "+3281246600"
    assert body["email"] == "dispatch@police.example"
    assert body["zone_id"] == world.zone.id
    assert body["active"] is True


def test_police_contact_validation_names_every_field(client, world: World, other_world: World):
    before = db.session.query(PoliceContact).count()
    response = client.post(
        CONTACTS,
        json={
            "name": "X",
            "zone_id": other_world.zone.id,
            "phone": "not a number",
            "email": "nope",
            "webhook_url": "http://police.example/hook",
        },
        headers=world.headers["admin"],
    )
    assert response.status_code == 422
    fields = set(response.get_json()["error"]["fields"])
    # The email's format is checked by the schema first, then the rest by the service.
    assert fields == {"email"}
    response = client.post(
        CONTACTS,
        json={
            "name": "X",
            "zone_id": other_world.zone.id,
            "phone": "not a number",
            "webhook_url": "http://police.example/hook",
        },
        headers=world.headers["admin"],
    )
    assert set(response.get_json()["error"]["fields"]) == {"zone_id", "phone", "webhook_url"}
    assert db.session.query(PoliceContact).count() == before


def test_police_contact_needs_one_channel(client, world: World):
    response = client.post(CONTACTS, json={"name": "Nobody"}, headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"phone", "email", "webhook_url"}
    contact = f.make_police_contact(world.circle)
    response = client.patch(f"{CONTACTS}/{contact.id}", json={"phone": None},
                            headers=world.headers["admin"])
    assert response.status_code == 422
    response = client.patch(
        f"{CONTACTS}/{contact.id}",
        json={"phone": None, "email": "desk@police.example", "zone_id": world.zone.id},
        headers=world.headers["admin"],
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["phone"], body["email"], body["zone_id"]) == (
        None, "desk@police.example", world.zone.id,
    )


def test_police_contacts_list_and_tenancy(client, world: World, other_world: World):
    wide = f.make_police_contact(world.circle)
    local = f.make_police_contact(world.circle, world.zone, name="Local")
    f.make_police_contact(other_world.circle)
    for role in ("admin", "dispatcher", "coordinator"):
        response = client.get(CONTACTS, headers=world.headers[role])
        assert response.status_code == 200
        assert [c["id"] for c in response.get_json()["items"]] == [wide.id, local.id]
    response = client.get(f"{CONTACTS}?zone_id={world.zone.id}", headers=world.headers["admin"])
    assert [c["id"] for c in response.get_json()["items"]] == [local.id]
    assert client.get(CONTACTS, headers=world.headers["doctor"]).status_code == 403
    response = client.patch(f"{CONTACTS}/{wide.id}", json={"name": "Taken"},
                            headers=other_world.headers["admin"])
    assert response.status_code == 404
    for role in ("dispatcher", "coordinator", "doctor"):
        headers = world.headers[role]
        response = client.post(CONTACTS, json={"name": "P", "phone": "112"}, headers=headers)
        assert response.status_code == 403
        response = client.patch(f"{CONTACTS}/{wide.id}", json={"name": "P"}, headers=headers)
        assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(PoliceContact, wide.id).name == "Police zone contact"


def test_contacts_for_a_zone_fall_back_to_the_circle(db, world: World):
    wide = f.make_police_contact(world.circle)
    f.make_police_contact(world.circle, world.zone, active=False)
    assert services.police_contacts_for_zone(world.circle.id, world.zone.id) == [wide]
    local = f.make_police_contact(world.circle, world.zone)
    assert services.police_contacts_for_zone(world.circle.id, world.zone.id) == [local]
    assert services.police_contacts_for_zone(world.circle.id, None) == [wide]


# --- paging ----------------------------------------------------------------------------


def test_zones_are_paged_by_name_with_the_id_as_tie_break(client, world: World, other_world):
    # Names equal but for case sort together; the id breaks the tie.
    twins = [f.make_zone(world.circle, name) for name in ("centre", "Centre")]
    headers = world.headers["doctor"]
    first = client.get(ZONES, query_string={"limit": 2}, headers=headers).get_json()
    assert [z["id"] for z in first["items"]] == [twins[0].id, twins[1].id]
    assert (first["limit"], first["offset"], first["next_offset"]) == (2, 0, 2)
    rest = client.get(ZONES, query_string={"limit": 2, "offset": 2}, headers=headers).get_json()
    assert [z["name"] for z in rest["items"]] == ["Nord"]
    assert rest["next_offset"] is None


@pytest.mark.parametrize("path", [ZONES, CONTACTS])
@pytest.mark.parametrize(("query", "field"), [({"limit": 0}, "limit"), ({"offset": -5}, "offset")])
def test_a_bad_page_is_named(client, world: World, path: str, query, field: str):
    response = client.get(path, query_string=query, headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {field}


def test_police_contact_filter_combines_with_paging(client, world: World, other_world):
    f.make_police_contact(world.circle)
    own = [f.make_police_contact(world.circle, world.zone, name=n) for n in ("B", "A", "C")]
    f.make_police_contact(other_world.circle, other_world.zone)
    headers = world.headers["dispatcher"]
    query = {"zone_id": world.zone.id, "limit": 2}
    first = client.get(CONTACTS, query_string=query, headers=headers).get_json()
    assert [c["name"] for c in first["items"]] == ["A", "B"]
    assert first["next_offset"] == 2
    rest = client.get(CONTACTS, query_string={**query, "offset": 2}, headers=headers).get_json()
    assert [c["id"] for c in rest["items"]] == [own[2].id]
    assert rest["next_offset"] is None
    with pytest.raises(ValidationFailed) as err:
        services.list_police_contacts(world.admin, limit=201)
    assert set(err.value.fields) == {"limit"}


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"], ids=["nul", "surrogate"])
def test_unstorable_text_is_named_not_a_server_error(client, world: World, bad: str):
    admin = world.headers["admin"]
    contact = {"name": "P", "email": "police@example.test"}
    cases = [
        ("patch", "/api/v1/circle", {}, ["name", "timezone"]),
        ("post", ZONES, {"name": "Zed"}, ["name", "code"]),
        ("patch", f"{ZONES}/{world.zone.id}", {}, ["name", "code"]),
        ("post", CONTACTS, contact,
         ["name", "phone", "email", "webhook_url", "protocol_reference", "notes"]),
    ]
    for method, path, base, fields in cases:
        for field in fields:
            response = getattr(client, method)(path, json={**base, field: bad}, headers=admin)
            assert response.status_code == 422, (path, field, response.get_json())
            assert field in response.get_json()["error"]["fields"]
    assert db.session.query(Zone).count() == 1
    assert db.session.query(PoliceContact).count() == 0
