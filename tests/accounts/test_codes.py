"""A doctor's check-in code and duress code: set once, stored hashed, never shown."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import schemathesis
from sqlalchemy import select

from oncall.accounts import services
from oncall.accounts.codes import CodeMatch, check_code
from oncall.accounts.models import User
from oncall.core.timeline import TimelineEvent
from oncall.errors import Forbidden, ValidationFailed
from oncall.extensions import db
from tests.conftest import World

CODES = "/api/v1/me/codes"
NOW = datetime(2030, 1, 15, 20, 0, tzinfo=UTC)


def _user(user_id: int) -> User:
    db.session.expire_all()
    user = db.session.get(User, user_id)
    assert user is not None
    return user


def test_a_doctor_sets_codes_and_only_their_hashes_are_kept(world: World):
    user = services.set_codes(world.doctor, {"checkin_code": "2468", "duress_code": "13579"}, NOW)
    assert user.codes_set_at == NOW
    stored = _user(world.doctor.id)
    assert stored.checkin_code_hash
    assert "2468" not in stored.checkin_code_hash
    assert stored.duress_code_hash
    assert "13579" not in stored.duress_code_hash
    assert check_code(stored, "2468") is CodeMatch.CHECKIN
    assert check_code(stored, "13579") is CodeMatch.DURESS
    assert check_code(stored, "1111") is CodeMatch.WRONG
    (event,) = db.session.scalars(
        select(TimelineEvent).where(TimelineEvent.kind == "user.codes_set")
    )
    assert (event.subject_type, event.subject_id, event.actor_id) == (
        "user", world.doctor.id, world.doctor.id,
    )
    assert "2468" not in str(event.data)
    assert "13579" not in str(event.data)


def test_new_codes_replace_the_old_ones(world: World):
    services.set_codes(world.doctor, {"checkin_code": "2468", "duress_code": "1357"}, NOW)
    services.set_codes(world.doctor, {"checkin_code": "8642", "duress_code": "7531"}, NOW)
    stored = _user(world.doctor.id)
    assert check_code(stored, "2468") is CodeMatch.WRONG
    assert check_code(stored, "1357") is CodeMatch.WRONG
    assert check_code(stored, "7531") is CodeMatch.DURESS


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ({}, {"checkin_code", "duress_code"}),
        ({"checkin_code": "2468"}, {"duress_code"}),
        ({"checkin_code": "24a8", "duress_code": "1357"}, {"checkin_code"}),
        ({"checkin_code": "246", "duress_code": "123456789"}, {"checkin_code", "duress_code"}),
        ({"checkin_code": "2468\n", "duress_code": "1357"}, {"checkin_code"}),
        ({"checkin_code": "\uff12\uff14\uff16\uff18", "duress_code": "1357"}, {"checkin_code"}),
        ({"checkin_code": 2468, "duress_code": "1357"}, {"checkin_code"}),
        ({"checkin_code": "2468", "duress_code": "2468"}, {"duress_code"}),
        ({"checkin_code": "2468", "duress_code": "1357", "pin": "1"}, {"pin"}),
    ],
)
def test_codes_are_checked_and_nothing_is_written(world: World, data, fields):
    with pytest.raises(ValidationFailed) as bad:
        services.set_codes(world.doctor, data, NOW)
    assert set(bad.value.fields) == fields
    db.session.rollback()
    assert _user(world.doctor.id).codes_set_at is None


def test_the_duress_code_must_differ_from_the_check_in_code(world: World):
    with pytest.raises(ValidationFailed) as bad:
        services.set_codes(world.doctor, {"checkin_code": "2468", "duress_code": "2468"}, NOW)
    assert bad.value.fields == {"duress_code": ["Must differ from the check-in code."]}


def test_only_doctors_have_codes(world: World):
    for role in ("admin", "dispatcher", "coordinator"):
        with pytest.raises(Forbidden):
            services.set_codes(
                getattr(world, role), {"checkin_code": "2468", "duress_code": "1357"}, NOW
            )


def test_codes_over_http(client, world: World):
    me = client.get("/api/v1/me", headers=world.headers["doctor"]).get_json()
    assert me["codes_set"] is False
    response = client.put(
        CODES, json={"checkin_code": "2468", "duress_code": "13579"},
        headers=world.headers["doctor"],
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"codes_set_at"}
    assert "2468" not in response.get_data(as_text=True)
    me = client.get("/api/v1/me", headers=world.headers["doctor"]).get_json()
    assert me["codes_set"] is True
    assert not {"checkin_code_hash", "duress_code_hash", "codes_set_at"} & set(me)
    patched = client.patch("/api/v1/me", json={}, headers=world.headers["doctor"]).get_json()
    assert patched["codes_set"] is True


def test_codes_over_http_are_refused_when_wrong(client, world: World):
    response = client.put(
        CODES, json={"checkin_code": "2468", "duress_code": "2468"},
        headers=world.headers["doctor"],
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["duress_code"]
    response = client.put(CODES, json={"checkin_code": "12"}, headers=world.headers["doctor"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"checkin_code", "duress_code"}
    response = client.put(
        CODES, json={"checkin_code": "2468", "duress_code": "1357"},
        headers=world.headers["coordinator"],
    )
    assert response.status_code == 403
    assert _user(world.doctor.id).codes_set_at is None


def test_the_answers_match_the_api_document(app, client, world: World):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    response = client.put(
        CODES, json={"checkin_code": "2468", "duress_code": "1357"},
        headers=world.headers["doctor"],
    )
    schema["/api/v1/me/codes"]["PUT"].validate_response(response)
    response = client.get("/api/v1/me", headers=world.headers["doctor"])
    schema["/api/v1/me"]["GET"].validate_response(response)
