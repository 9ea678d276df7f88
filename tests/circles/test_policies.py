"""Escalation policies: read, replace, validation, roles and tenancy."""

from __future__ import annotations

import pytest

from oncall.circles import services
from oncall.circles.models import ALERT_KINDS, DEFAULT_POLICIES, EscalationPolicy
from oncall.core.timeline import TimelineEvent
from oncall.extensions import db
from tests.conftest import World

POLICIES = "/api/v1/escalation-policies"

STEPS = [
    {"target": "doctor", "after_seconds": 0, "repeat_every_seconds": None,
     "stop_on": "acknowledge"},
    {"target": "coordinator", "after_seconds": 60, "repeat_every_seconds": 60,
     "stop_on": "acknowledge"},
    {"target": "police", "after_seconds": 300, "repeat_every_seconds": None, "stop_on": "resolve"},
]


def test_list_shows_every_kind_with_defaults(client, world: World):
    for role in ("admin", "coordinator"):
        response = client.get(POLICIES, headers=world.headers[role])
        assert response.status_code == 200
        body = response.get_json()["items"]
        assert [p["kind"] for p in body] == list(ALERT_KINDS)
        assert all(p["is_default"] for p in body)
        assert body[0]["steps"] == DEFAULT_POLICIES["missed_arrival"]


def test_admin_replaces_a_policy(client, world: World, other_world: World):
    response = client.put(f"{POLICIES}/missed_checkout", json={"steps": STEPS},
                          headers=world.headers["admin"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["steps"] == STEPS
    assert body["is_default"] is False
    assert body["updated_by_id"] == world.admin.id
    assert body["updated_at"] is not None
    row = db.session.query(EscalationPolicy).filter_by(
        circle_id=world.circle.id, alert_kind="missed_checkout").one()
    assert row.steps == STEPS
    assert services.policy_steps(world.circle.id, "missed_checkout") == STEPS
    event = db.session.query(TimelineEvent).filter_by(kind="escalation_policy.replaced").one()
    assert event.data["alert_kind"] == "missed_checkout"
    # Replacing again updates the same row.
    response = client.put(f"{POLICIES}/missed_checkout", json={"steps": STEPS[:1]},
                          headers=world.headers["admin"])
    assert response.status_code == 200
    assert db.session.query(EscalationPolicy).count() == 1
    fetched = client.get(f"{POLICIES}/missed_checkout", headers=world.headers["coordinator"])
    assert fetched.get_json()["steps"] == STEPS[:1]
    # The other circle keeps its defaults.
    theirs = client.get(f"{POLICIES}/missed_checkout", headers=other_world.headers["admin"])
    assert theirs.get_json()["steps"] == DEFAULT_POLICIES["missed_checkout"]
    assert services.policy_steps(other_world.circle.id, "missed_checkout") == (
        DEFAULT_POLICIES["missed_checkout"]
    )


def test_repeat_defaults_to_none(client, world: World):
    steps = [{"target": "police", "after_seconds": 0, "stop_on": "resolve"}]
    response = client.put(f"{POLICIES}/panic", json={"steps": steps},
                          headers=world.headers["admin"])
    assert response.status_code == 200
    assert response.get_json()["steps"][0]["repeat_every_seconds"] is None


def test_unknown_kind_is_404(client, world: World):
    assert client.get(f"{POLICIES}/fire", headers=world.headers["admin"]).status_code == 404
    response = client.put(f"{POLICIES}/fire", json={"steps": STEPS},
                          headers=world.headers["admin"])
    assert response.status_code == 404
    assert db.session.query(EscalationPolicy).count() == 0


@pytest.mark.parametrize(
    ("steps", "fields"),
    [
        ([], {"steps"}),
        ([STEPS[0]] * 11, {"steps"}),
        (
            [{"target": "neighbour", "after_seconds": -1, "repeat_every_seconds": 0,
              "stop_on": "never"}],
            {"steps.0.target", "steps.0.after_seconds", "steps.0.repeat_every_seconds",
             "steps.0.stop_on"},
        ),
        ([{"target": "police", "stop_on": "resolve"}], {"steps.0.after_seconds"}),
        ([{**STEPS[0], "after_seconds": 1.5}], {"steps.0.after_seconds"}),
        ([{**STEPS[0], "colour": "red"}], {"steps.0.colour"}),
        ("not a list", {"steps"}),
    ],
)
def test_schema_errors_name_each_step_field(client, world: World, steps, fields):
    response = client.put(f"{POLICIES}/panic", json={"steps": steps},
                          headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == fields
    assert db.session.query(EscalationPolicy).count() == 0


def test_after_seconds_must_not_decrease(client, world: World):
    steps = [STEPS[0], {**STEPS[2], "after_seconds": 600}, {**STEPS[1], "after_seconds": 120}]
    response = client.put(f"{POLICIES}/panic", json={"steps": steps},
                          headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"steps.2.after_seconds"}
    assert db.session.query(EscalationPolicy).count() == 0


def test_service_validates_on_its_own(db, world: World):
    from oncall.core.clock import utcnow
    from oncall.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as bad:
        services.replace_policy(
            world.admin, "panic",
            [{"target": "police", "after_seconds": True, "repeat_every_seconds": "1",
              "stop_on": "resolve", "extra": 1}],
            utcnow(),
        )
    assert set(bad.value.fields) == {"steps.0.after_seconds", "steps.0.repeat_every_seconds",
                                     "steps.0.extra"}


@pytest.mark.parametrize("role", ["dispatcher", "doctor"])
def test_roles_that_do_not_read_policies(client, world: World, role: str):
    assert client.get(POLICIES, headers=world.headers[role]).status_code == 403
    assert client.get(f"{POLICIES}/panic", headers=world.headers[role]).status_code == 403


@pytest.mark.parametrize("role", ["dispatcher", "coordinator", "doctor"])
def test_only_admins_replace_policies(client, world: World, role: str):
    response = client.put(f"{POLICIES}/panic", json={"steps": STEPS}, headers=world.headers[role])
    assert response.status_code == 403
    assert db.session.query(EscalationPolicy).count() == 0


def test_the_policy_list_is_paged_in_kind_order(client, world: World):
    headers = world.headers["coordinator"]
    kinds = list(ALERT_KINDS)
    first = client.get(POLICIES, query_string={"limit": 2}, headers=headers).get_json()
    assert [p["kind"] for p in first["items"]] == kinds[:2]
    assert first["next_offset"] == (2 if len(kinds) > 2 else None)
    rest = client.get(POLICIES, query_string={"limit": 2, "offset": 2}, headers=headers).get_json()
    assert [p["kind"] for p in rest["items"]] == kinds[2:4]
    beyond = client.get(POLICIES, query_string={"offset": len(kinds)}, headers=headers)
    assert beyond.get_json() == {"items": [], "limit": 50, "offset": len(kinds),
                                 "next_offset": None}
    everything = client.get(POLICIES, query_string={"limit": len(kinds)}, headers=headers)
    assert everything.get_json()["next_offset"] is None
    bad = client.get(POLICIES, query_string={"limit": 0}, headers=headers)
    assert bad.status_code == 422
    assert set(bad.get_json()["error"]["fields"]) == {"limit"}
