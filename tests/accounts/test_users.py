"""Users: list, create, update, deactivate; validation, roles and tenancy."""

from __future__ import annotations

import pytest

from oncall.accounts.models import ApiToken, User
from oncall.calls.models import Call
from oncall.core.clock import utcnow
from oncall.core.timeline import TimelineEvent
from oncall.extensions import db
from oncall.visits.models import Visit
from tests import factories as f
from tests.conftest import World

USERS = "/api/v1/users"

NEW_DOCTOR = {
    "email": "Dr.Peeters@Example.test",
    "name": "Dr An Peeters",
    "role": "doctor",
    "password": "a long enough password",
    "phone": "0470 12 34 56",
    "language": "nl",
    "vehicle_make": "Skoda Octavia",
    "vehicle_colour": "grey",
    "vehicle_plate": "1-ABC-123",
}


def make_visit(world: World, doctor, status: str = "assigned") -> Visit:
    now = utcnow()
    call = Call(circle_id=world.circle.id, state="answered", created_at=now, updated_at=now)
    db.session.add(call)
    db.session.flush()
    visit = Visit(
        circle_id=world.circle.id,
        call_id=call.id,
        zone_id=world.zone.id,
        doctor_id=doctor.id,
        status=status,
        created_at=now,
        updated_at=now,
    )
    db.session.add(visit)
    db.session.commit()
    return visit


def user_count() -> int:
    return db.session.query(User).count()


def test_admin_creates_a_doctor(client, world: World):
    response = client.post(USERS, json=NEW_DOCTOR, headers=world.headers["admin"])
    assert response.status_code == 201
    body = response.get_json()
    assert body["email"] == "dr.peeters@example.test"
    assert body["phone"] == "+32470123456"  # national number read in the circle's country
    assert body["role"] == "doctor"
    assert body["language"] == "nl"
    assert body["active"] is True
    assert (body["vehicle_make"], body["vehicle_colour"], body["vehicle_plate"]) == (
        "Skoda Octavia", "grey", "1-ABC-123",
    )
    assert "password" not in body
    assert "password_hash" not in body
    user = db.session.get(User, body["id"])
    assert user.circle_id == world.circle.id
    assert user.password_hash.startswith("$argon2id$")
    assert NEW_DOCTOR["password"] not in user.password_hash
    events = db.session.query(TimelineEvent).filter_by(subject_type="user", subject_id=user.id)
    assert [e.kind for e in events] == ["user.created"]
    # The new doctor can log in.
    login = client.post(
        "/api/v1/auth/tokens",
        json={"email": "DR.PEETERS@example.test", "password": NEW_DOCTOR["password"]},
    )
    assert login.status_code == 201


def test_every_bad_field_is_named_and_nothing_written(client, world: World):
    before = user_count()
    response = client.post(
        USERS,
        json={
            "email": "not-an-email",
            "name": "",
            "role": "surgeon",
            "password": "short",
            "language": "de",
            "vehicle_plate": "x" * 21,
        },
        headers=world.headers["admin"],
    )
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"email", "name", "role", "password", "language", "vehicle_plate"}
    assert user_count() == before


def test_missing_fields_are_named(client, world: World):
    response = client.post(USERS, json={}, headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"email", "name", "role", "password"}


def test_bad_phone_is_named(client, world: World):
    before = user_count()
    response = client.post(
        USERS, json={**NEW_DOCTOR, "phone": "call me maybe"}, headers=world.headers["admin"]
    )
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"phone"}
    assert user_count() == before


def test_email_is_unique_across_circles(client, world: World, other_world: World):
    before = user_count()
    response = client.post(
        USERS,
        json={**NEW_DOCTOR, "email": other_world.doctor.email.upper()},
        headers=world.headers["admin"],
    )
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"email"}
    assert user_count() == before


def test_list_and_filters(client, world: World, other_world: World):
    f.make_user(world.circle, "doctor", active=False)
    response = client.get(USERS, headers=world.headers["dispatcher"])
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert len(items) == 5
    assert all("password_hash" not in item for item in items)
    assert other_world.admin.id not in {item["id"] for item in items}
    doctors = client.get(f"{USERS}?role=doctor&active=true", headers=world.headers["admin"])
    assert [u["id"] for u in doctors.get_json()["items"]] == [world.doctor.id]
    bad = client.get(f"{USERS}?role=nurse", headers=world.headers["admin"])
    assert bad.status_code == 422
    assert "role" in bad.get_json()["error"]["fields"]


def test_get_one_and_other_circle_is_404(client, world: World, other_world: World):
    response = client.get(f"{USERS}/{world.doctor.id}", headers=world.headers["coordinator"])
    assert response.status_code == 200
    assert response.get_json()["email"] == world.doctor.email
    hidden = client.get(f"{USERS}/{world.doctor.id}", headers=other_world.headers["admin"])
    assert hidden.status_code == 404
    for path, method in (
        (f"{USERS}/{world.doctor.id}", "PATCH"),
        (f"{USERS}/{world.doctor.id}/deactivate", "POST"),
    ):
        response = client.open(path, method=method, json={}, headers=other_world.headers["admin"])
        assert response.status_code == 404
    assert db.session.get(User, world.doctor.id).active


def test_update_user(client, world: World):
    response = client.patch(
        f"{USERS}/{world.doctor.id}",
        json={"name": "Dr Janssens", "phone": "+32 2 555 12 12", "vehicle_plate": None,
              "password": "another long password"},
        headers=world.headers["admin"],
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["name"] == "Dr Janssens"
    assert body["phone"] == "+3225551212"
    assert body["vehicle_plate"] is None
    login = client.post(
        "/api/v1/auth/tokens",
        json={"email": world.doctor.email, "password": "another long password"},
    )
    assert login.status_code == 201
    event = db.session.query(TimelineEvent).filter_by(kind="user.updated").one()
    assert event.data["fields"] == ["name", "password", "phone"]


def test_update_refuses_bad_fields_and_writes_nothing(client, world: World):
    response = client.patch(
        f"{USERS}/{world.doctor.id}",
        json={"role": "boss", "language": "de", "unknown": 1},
        headers=world.headers["admin"],
    )
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"role", "language", "unknown"}
    response = client.patch(
        f"{USERS}/{world.doctor.id}",
        json={"email": world.admin.email, "name": "   "},
        headers=world.headers["admin"],
    )
    assert set(response.get_json()["error"]["fields"]) == {"email", "name"}
    db.session.expire_all()
    assert db.session.get(User, world.doctor.id).name != "   "


def test_role_change_of_a_doctor_with_open_visits_is_refused(client, world: World):
    make_visit(world, world.doctor)
    response = client.patch(
        f"{USERS}/{world.doctor.id}", json={"role": "dispatcher"}, headers=world.headers["admin"]
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "doctor_has_open_visits"
    db.session.expire_all()
    assert db.session.get(User, world.doctor.id).role == "doctor"


def test_deactivation_revokes_tokens(client, world: World):
    f.token_for(world.dispatcher)
    headers = world.headers["dispatcher"]
    response = client.post(f"{USERS}/{world.dispatcher.id}/deactivate",
                           headers=world.headers["admin"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["active"] is False
    assert body["deactivated_at"] is not None
    tokens = db.session.query(ApiToken).filter_by(user_id=world.dispatcher.id).all()
    assert len(tokens) == 2
    assert all(t.revoked_at is not None for t in tokens)
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    # Again: nothing changes.
    again = client.post(f"{USERS}/{world.dispatcher.id}/deactivate",
                        headers=world.headers["admin"])
    assert again.status_code == 200
    assert again.get_json()["deactivated_at"] == body["deactivated_at"]


@pytest.mark.parametrize("status", ["assigned", "on_site"])
def test_doctor_with_open_visits_is_not_deactivated(client, world: World, status: str):
    make_visit(world, world.doctor, status)
    response = client.post(f"{USERS}/{world.doctor.id}/deactivate",
                           headers=world.headers["admin"])
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "doctor_has_open_visits"
    db.session.expire_all()
    assert db.session.get(User, world.doctor.id).active
    assert client.get("/api/v1/me", headers=world.headers["doctor"]).status_code == 200


def test_doctor_with_only_closed_visits_is_deactivated(client, world: World):
    make_visit(world, world.doctor, "completed")
    make_visit(world, world.doctor, "cancelled")
    response = client.post(f"{USERS}/{world.doctor.id}/deactivate",
                           headers=world.headers["admin"])
    assert response.status_code == 200


def test_last_admin_stays(client, world: World):
    response = client.post(f"{USERS}/{world.admin.id}/deactivate", headers=world.headers["admin"])
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "last_admin"
    response = client.patch(
        f"{USERS}/{world.admin.id}", json={"role": "doctor"}, headers=world.headers["admin"]
    )
    assert response.status_code == 409
    second = f.make_user(world.circle, "admin")
    response = client.post(f"{USERS}/{world.admin.id}/deactivate", headers=f.auth(second))
    assert response.status_code == 200


@pytest.mark.parametrize("role", ["dispatcher", "coordinator", "doctor"])
def test_only_admins_write_users(client, world: World, role: str):
    before = user_count()
    headers = world.headers[role]
    assert client.post(USERS, json=NEW_DOCTOR, headers=headers).status_code == 403
    response = client.patch(f"{USERS}/{world.doctor.id}", json={"name": "X"}, headers=headers)
    assert response.status_code == 403
    response = client.post(f"{USERS}/{world.dispatcher.id}/deactivate", headers=headers)
    assert response.status_code == 403
    assert user_count() == before
    db.session.expire_all()
    assert db.session.get(User, world.dispatcher.id).active


def test_doctors_do_not_list_users(client, world: World):
    assert client.get(USERS, headers=world.headers["doctor"]).status_code == 403
    response = client.get(f"{USERS}/{world.admin.id}", headers=world.headers["doctor"])
    assert response.status_code == 403
