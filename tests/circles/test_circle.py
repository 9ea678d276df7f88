"""The circle itself: creation (bootstrap), reading and changing it."""

from __future__ import annotations

import pytest

from oncall.accounts.models import User
from oncall.accounts.passwords import verify_password
from oncall.circles import services
from oncall.circles.models import DEFAULT_POLICIES, Circle, EscalationPolicy
from oncall.core.clock import utcnow
from oncall.errors import Conflict, ValidationFailed
from oncall.extensions import db
from tests.conftest import World

CIRCLE = "/api/v1/circle"


def test_create_circle_with_policies_and_admin(db):
    now = utcnow()
    circle, admin = services.create_circle(
        "Cercle de Namur", " Admin@Example.test ", "a long enough password", now,
        admin_name="Marie Dubois",
    )
    assert circle.id is not None
    assert (circle.timezone, circle.country) == ("Europe/Brussels", "BE")
    assert admin.circle_id == circle.id
    assert admin.role == "admin"
    assert admin.email == "admin@example.test"
    assert admin.name == "Marie Dubois"
    assert verify_password(admin.password_hash, "a long enough password")
    policies = db.session.query(EscalationPolicy).filter_by(circle_id=circle.id).all()
    assert {p.alert_kind: p.steps for p in policies} == DEFAULT_POLICIES


def test_create_circle_refuses_a_taken_name(db):
    services.create_circle("Cercle A", "a1@example.test", "a long enough password", utcnow())
    with pytest.raises(Conflict) as taken:
        services.create_circle("cercle a", "a2@example.test", "a long enough password", utcnow())
    assert taken.value.code == "circle_exists"
    assert db.session.query(User).filter_by(email="a2@example.test").count() == 0


def test_create_circle_names_every_bad_field_and_writes_nothing(db):
    with pytest.raises(ValidationFailed) as bad:
        services.create_circle(
            "", "not an email", "short", utcnow(), timezone="Mars/Olympus", country="XX"
        )
    assert set(bad.value.fields) == {"name", "admin_email", "admin_password", "timezone",
                                     "country"}
    assert db.session.query(Circle).count() == 0
    assert db.session.query(User).count() == 0


def test_get_circle_for_any_role(client, world: World):
    for role in ("admin", "dispatcher", "coordinator", "doctor"):
        response = client.get(CIRCLE, headers=world.headers[role])
        assert response.status_code == 200
        assert response.get_json()["name"] == "Cercle de test"


def test_admin_changes_the_circle(client, world: World):
    response = client.patch(
        CIRCLE, json={"name": "Cercle du Nord", "timezone": "Europe/Paris", "country": "fr"},
        headers=world.headers["admin"],
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["timezone"], body["country"]) == (
        "Cercle du Nord", "Europe/Paris", "FR",
    )


def test_circle_changes_are_validated(client, world: World, other_world: World):
    response = client.patch(
        CIRCLE, json={"name": "Autre cercle", "timezone": "Europe/Nowhere", "country": "QQ"},
        headers=world.headers["admin"],
    )
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"name", "timezone", "country"}
    response = client.patch(CIRCLE, json={"country": "BEL"}, headers=world.headers["admin"])
    assert response.status_code == 422
    db.session.expire_all()
    circle = db.session.get(Circle, world.circle.id)
    assert (circle.name, circle.timezone, circle.country) == (
        "Cercle de test", "Europe/Brussels", "BE",
    )


@pytest.mark.parametrize("role", ["dispatcher", "coordinator", "doctor"])
def test_only_admins_change_the_circle(client, world: World, role: str):
    response = client.patch(CIRCLE, json={"name": "Mine"}, headers=world.headers[role])
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Circle, world.circle.id).name == "Cercle de test"
