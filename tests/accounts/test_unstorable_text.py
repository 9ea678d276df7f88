"""Text the database cannot keep (NUL characters, lone surrogates) is a 422 naming the
field, never a server error, and nothing is written."""

from __future__ import annotations

import pytest

from oncall.accounts.models import User
from oncall.extensions import db
from tests import factories as f
from tests.conftest import World

UNSTORABLE = ["a\x00b", "a\ud800b"]
ME = "/api/v1/me"
USERS = "/api/v1/users"
NEW_USER = {"email": "new@example.test", "name": "New", "role": "doctor",
            "password": "a long enough password"}

CASES = [
    ("post", "/api/v1/auth/tokens", {"email": "x@example.test", "password": "p"},
     ["email", "password", "label"]),
    ("patch", ME, {}, ["name", "phone", "vehicle_make", "vehicle_colour", "vehicle_plate"]),
    ("patch", ME, {"current_password": f.PASSWORD}, ["password"]),
    ("patch", ME, {"password": "a long enough password"}, ["current_password"]),
    ("post", USERS, NEW_USER,
     ["email", "name", "phone", "password", "vehicle_make", "vehicle_colour", "vehicle_plate"]),
    ("patch", "USER", {}, ["email", "name", "phone", "password", "vehicle_plate"]),
]


@pytest.mark.parametrize("bad", UNSTORABLE, ids=["nul", "surrogate"])
@pytest.mark.parametrize(("method", "path", "base", "fields"), CASES)
def test_unstorable_text_is_named(client, world: World, method, path, base, fields, bad):
    if path == "USER":
        path = f"{USERS}/{world.doctor.id}"
    before = {(u.id, u.name, u.email, u.phone, u.password_hash) for u in db.session.query(User)}
    for field in fields:
        response = getattr(client, method)(
            path, json={**base, field: bad}, headers=world.headers["admin"]
        )
        assert response.status_code == 422, (field, response.get_json())
        assert field in response.get_json()["error"]["fields"]
    db.session.expire_all()
    after = {(u.id, u.name, u.email, u.phone, u.password_hash) for u in db.session.query(User)}
    assert after == before
