"""The current user: read and change one's own account; CSRF on session requests."""

from __future__ import annotations

from oncall.accounts.models import User
from oncall.extensions import db
from tests import factories as f
from tests.conftest import World

ME = "/api/v1/me"


def test_me_shows_the_user_without_secrets(client, world: World):
    response = client.get(ME, headers=world.headers["doctor"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == world.doctor.id
    assert body["circle_id"] == world.circle.id
    assert body["role"] == "doctor"
    assert "password_hash" not in body


def test_update_me(client, world: World):
    response = client.patch(
        ME,
        json={"language": "en", "phone": "02 555 00 00", "vehicle_colour": "red"},
        headers=world.headers["doctor"],
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["language"], body["phone"], body["vehicle_colour"]) == ("en", "+3225550000", "red")


def test_me_cannot_change_role_or_email(client, world: World):
    response = client.patch(ME, json={"role": "admin", "email": "x@example.test"},
                            headers=world.headers["doctor"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"role", "email"}
    db.session.expire_all()
    assert db.session.get(User, world.doctor.id).role == "doctor"


def test_password_change_needs_the_current_password(client, world: World):
    new = {"password": "a brand new password"}
    missing = client.patch(ME, json=new, headers=world.headers["dispatcher"])
    assert missing.status_code == 422
    assert set(missing.get_json()["error"]["fields"]) == {"current_password"}
    wrong = client.patch(ME, json={**new, "current_password": "not my password"},
                         headers=world.headers["dispatcher"])
    assert wrong.status_code == 422
    assert set(wrong.get_json()["error"]["fields"]) == {"current_password"}
    short = client.patch(ME, json={"password": "short", "current_password": f.PASSWORD},
                         headers=world.headers["dispatcher"])
    assert short.status_code == 422
    assert set(short.get_json()["error"]["fields"]) == {"password"}
    ok = client.patch(ME, json={**new, "current_password": f.PASSWORD},
                      headers=world.headers["dispatcher"])
    assert ok.status_code == 200
    login = client.post("/api/v1/auth/tokens",
                        json={"email": world.dispatcher.email, "password": new["password"]})
    assert login.status_code == 201
    old = client.post("/api/v1/auth/tokens",
                      json={"email": world.dispatcher.email, "password": f.PASSWORD})
    assert old.status_code == 401


def test_me_needs_authentication(client, world: World):
    assert client.get(ME).status_code == 401
    assert client.patch(ME, json={"name": "X"}).status_code == 401


def _console_login(client, user) -> str:
    client.get("/login")
    with client.session_transaction() as session:
        token = session["csrf"]
    response = client.post(
        "/login", data={"email": user.email, "password": f.PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    with client.session_transaction() as session:
        return str(session["csrf"])


def test_session_requests_need_the_csrf_header_on_unsafe_methods(client, world: World):
    csrf = _console_login(client, world.coordinator)
    assert client.get(ME).status_code == 200  # safe methods need no token
    refused = client.patch(ME, json={"name": "Changed"})
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "csrf_failed"
    wrong = client.patch(ME, json={"name": "Changed"}, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    db.session.expire_all()
    assert db.session.get(User, world.coordinator.id).name != "Changed"
    ok = client.patch(ME, json={"name": "Changed"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200
    assert ok.get_json()["name"] == "Changed"
