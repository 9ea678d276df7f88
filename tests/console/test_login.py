"""Console login: the form, CSRF, the session, the home page and logout."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from oncall.extensions import db
from tests import factories as f
from tests.conftest import World


@pytest.fixture(autouse=True)
def own_rate_limit_window(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test counts login attempts on its own."""
    monkeypatch.setitem(app.config, "RATELIMIT_PREFIX", f"oncall:rl:test:{uuid.uuid4().hex}:")


def form_token(client) -> str:
    response = client.get("/login")
    assert response.status_code == 200
    with client.session_transaction() as session:
        token = str(session["csrf"])
    assert f'name="csrf_token" value="{token}"' in response.get_data(as_text=True)
    return token


def log_in(client, email: str, password: str = f.PASSWORD, token: str | None = None, **kw):
    token = form_token(client) if token is None else token
    data = {"email": email, "password": password, "csrf_token": token}
    return client.post("/login", data=data, **kw)


def test_home_without_a_session_goes_to_login(client, world: World):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/login")


def test_login_form_is_accessible_and_self_contained(client, world: World):
    response = client.get("/login")
    html = response.get_data(as_text=True)
    assert '<label for="email">' in html
    assert '<label for="password">' in html
    assert 'type="password"' in html
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html
    assert response.headers["X-Frame-Options"] == "DENY"
    css = client.get("/console/static/console.css")
    assert css.status_code == 200
    assert "text/css" in css.headers["Content-Type"]


def test_login_flow(client, world: World):
    response = log_in(client, world.dispatcher.email)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/")
    with client.session_transaction() as session:
        assert session["uid"] == world.dispatcher.id
    home = client.get("/")
    assert home.status_code == 200
    html = home.get_data(as_text=True)
    assert world.dispatcher.name in html
    assert "dispatcher" in html
    assert "Cercle de test" in html
    assert 'action="/logout"' in html
    # A logged-in user asking for the form goes home.
    assert client.get("/login").status_code == 302


def test_login_starts_a_fresh_session(client, world: World):
    token = form_token(client)
    log_in(client, world.doctor.email, token=token)
    with client.session_transaction() as session:
        assert session["csrf"] != token


def test_wrong_password_shows_the_form_again(client, world: World):
    response = log_in(client, world.dispatcher.email, "not the right password")
    assert response.status_code == 401
    html = response.get_data(as_text=True)
    assert "Wrong email or password." in html
    assert world.dispatcher.email in html  # the email is kept in the form
    with client.session_transaction() as session:
        assert "uid" not in session
    assert client.get("/").status_code == 302


def test_missing_or_wrong_csrf_token_is_refused(client, world: World):
    form_token(client)
    missing = client.post("/login", data={"email": world.admin.email, "password": f.PASSWORD})
    assert missing.status_code == 400
    assert '<form method="post"' in missing.get_data(as_text=True)
    wrong = log_in(client, world.admin.email, token="forged")
    assert wrong.status_code == 400
    with client.session_transaction() as session:
        assert "uid" not in session
    fresh = client.application.test_client()  # no session at all
    response = fresh.post("/login", data={"email": world.admin.email, "password": f.PASSWORD,
                                          "csrf_token": "anything"})
    assert response.status_code == 400


def test_login_is_rate_limited(client, world: World):
    token = form_token(client)
    for _ in range(10):
        assert log_in(client, world.admin.email, "bad password", token=token).status_code == 401
    response = log_in(client, world.admin.email, token=token)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "Too many attempts" in response.get_data(as_text=True)


def test_inactive_user_cannot_log_in_and_loses_the_session(client, world: World):
    log_in(client, world.coordinator.email)
    assert client.get("/").status_code == 200
    world.coordinator.active = False
    db.session.commit()
    assert client.get("/").status_code == 302
    assert log_in(client, world.coordinator.email).status_code == 401


def test_logout_needs_the_csrf_token(client, world: World):
    log_in(client, world.admin.email)
    refused = client.post("/logout", data={})
    assert refused.status_code == 400
    assert client.get("/").status_code == 200  # still logged in
    with client.session_transaction() as session:
        token = session["csrf"]
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/login")
    assert client.get("/").status_code == 302
    assert client.get("/api/v1/me").status_code == 401
