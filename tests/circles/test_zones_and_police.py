"""Zones and police contacts: create, update, validation, roles and tenancy."""

from __future__ import annotations

import pytest

from oncall.circles import services
from oncall.circles.models import PoliceContact, Zone
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
        assert [z["name"] for z in response.get_json()] == ["Est", "Nord"]


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
        assert [c["id"] for c in response.get_json()] == [wide.id, local.id]
    response = client.get(f"{CONTACTS}?zone_id={world.zone.id}", headers=world.headers["admin"])
    assert [c["id"] for c in response.get_json()] == [local.id]
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
