"""Bearer tokens: log in, list, revoke, expiry."""

from __future__ import annotations

from datetime import timedelta

from oncall.accounts import services
from oncall.accounts.models import ApiToken
from oncall.core.clock import utcnow
from oncall.extensions import db
from tests import factories as f
from tests.conftest import World

TOKENS = "/api/v1/auth/tokens"


def login(client, email: str, password: str = f.PASSWORD, **extra):
    return client.post(TOKENS, json={"email": email, "password": password, **extra})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_issues_a_working_token(client, world: World):
    response = login(client, world.doctor.email, label="Phone")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "token", "prefix", "label", "expires_at"}
    assert body["token"].startswith("oc_")
    assert body["token"].startswith(body["prefix"])
    assert body["label"] == "Phone"
    me = client.get("/api/v1/me", headers=bearer(body["token"]))
    assert me.status_code == 200
    assert me.get_json()["id"] == world.doctor.id
    row = db.session.get(ApiToken, body["id"])
    # Only the digest is stored, and the default lifetime is the configured 90 days.
    assert row.token_hash != body["token"]
    assert body["token"] not in row.token_hash
    lifetime = row.expires_at - row.created_at
    assert lifetime == timedelta(days=90)


def test_login_email_is_case_insensitive(client, world: World):
    response = login(client, "  " + world.admin.email.upper() + " ")
    assert response.status_code == 201


def test_wrong_password_and_unknown_email_answer_the_same(client, world: World):
    wrong = login(client, world.admin.email, "not the password at all")
    unknown = login(client, "nobody@example.test", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()
    assert wrong.get_json()["error"]["code"] == "invalid_credentials"
    assert db.session.query(ApiToken).count() == 4  # only the world's fixture tokens


def test_unknown_email_spends_the_same_hashing_work(client, world: World, monkeypatch):
    calls: list[str | None] = []
    real = services.verify_password

    def spy(stored, password):
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(services, "verify_password", spy)
    login(client, "nobody@example.test", "whatever password")
    login(client, world.admin.email, "whatever password")
    assert calls == [None, world.admin.password_hash]


def test_inactive_user_cannot_log_in(client, world: World):
    world.dispatcher.active = False
    db.session.commit()
    response = login(client, world.dispatcher.email)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_credentials"


def test_login_input_is_validated(client, world: World):
    response = client.post(TOKENS, json={"email": "", "label": "x" * 81})
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"email", "password", "label"}
    response = client.post(TOKENS, json={"email": "a@b.c", "password": "p", "admin": True})
    assert response.status_code == 422
    assert "admin" in response.get_json()["error"]["fields"]


def test_list_shows_own_tokens_without_the_secret(client, world: World):
    token = login(client, world.doctor.email, label="Phone").get_json()
    f.token_for(world.dispatcher)
    response = client.get(TOKENS, headers=bearer(token["token"]))
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert {item["user_id"] for item in items} == {world.doctor.id}
    assert len(items) == 2  # the fixture's token and the new one
    newest = items[0]
    assert newest["id"] == token["id"]
    assert set(newest) == {
        "id", "user_id", "prefix", "label", "created_at", "expires_at", "last_used_at",
        "revoked_at",
    }
    assert newest["prefix"] == token["prefix"]
    assert token["token"] not in response.get_data(as_text=True)
    assert newest["last_used_at"] is not None


def test_admin_lists_another_users_tokens_others_may_not(client, world: World, other_world):
    response = client.get(f"{TOKENS}?user_id={world.doctor.id}", headers=world.headers["admin"])
    assert response.status_code == 200
    assert {t["user_id"] for t in response.get_json()["items"]} == {world.doctor.id}
    refused = client.get(f"{TOKENS}?user_id={world.admin.id}", headers=world.headers["doctor"])
    assert refused.status_code == 403
    hidden = client.get(
        f"{TOKENS}?user_id={world.doctor.id}", headers=other_world.headers["admin"]
    )
    assert hidden.status_code == 404


def test_revoked_token_answers_401(client, world: World):
    token = login(client, world.coordinator.email).get_json()
    response = client.delete(f"{TOKENS}/{token['id']}", headers=bearer(token["token"]))
    assert response.status_code == 204
    assert db.session.get(ApiToken, token["id"]).revoked_at is not None
    again = client.get("/api/v1/me", headers=bearer(token["token"]))
    assert again.status_code == 401
    assert again.get_json()["error"]["code"] == "invalid_token"
    listed = client.get(TOKENS, headers=world.headers["coordinator"]).get_json()["items"]
    assert next(t for t in listed if t["id"] == token["id"])["revoked_at"] is not None


def test_expired_token_answers_401(client, world: World):
    token = f.token_for(world.dispatcher, ttl=timedelta(seconds=-1))
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_issue_token_takes_a_lifetime(db, world: World):
    now = utcnow()
    token, row = services.issue_token(world.doctor, " Phone ", now, ttl=timedelta(days=365))
    assert row.expires_at == now + timedelta(days=365)
    assert row.label == "Phone"
    assert row.prefix == token[:10]


def test_only_the_owner_or_an_admin_revokes(client, world: World, other_world: World):
    doctor_token = login(client, world.doctor.email).get_json()
    # Another user of the circle cannot see it.
    response = client.delete(f"{TOKENS}/{doctor_token['id']}", headers=world.headers["dispatcher"])
    assert response.status_code == 404
    # Another circle's admin cannot either.
    response = client.delete(f"{TOKENS}/{doctor_token['id']}", headers=other_world.headers["admin"])
    assert response.status_code == 404
    assert db.session.get(ApiToken, doctor_token["id"]).revoked_at is None
    # The circle's admin can.
    response = client.delete(f"{TOKENS}/{doctor_token['id']}", headers=world.headers["admin"])
    assert response.status_code == 204
    assert client.get("/api/v1/me", headers=bearer(doctor_token["token"])).status_code == 401


def test_revoking_twice_keeps_the_first_instant(client, world: World):
    token = login(client, world.doctor.email).get_json()
    client.delete(f"{TOKENS}/{token['id']}", headers=world.headers["doctor"])
    first = db.session.get(ApiToken, token["id"]).revoked_at
    response = client.delete(f"{TOKENS}/{token['id']}", headers=world.headers["doctor"])
    assert response.status_code == 204
    db.session.expire_all()
    assert db.session.get(ApiToken, token["id"]).revoked_at == first


def test_token_routes_need_authentication(client, world: World):
    assert client.get(TOKENS).status_code == 401
    assert client.delete(f"{TOKENS}/1").status_code == 401
