"""The circle's deadline settings and police protocol reference."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import schemathesis

from oncall.circles import services
from oncall.circles.models import Circle
from oncall.errors import ValidationFailed
from oncall.extensions import db
from tests.conftest import World

CIRCLE = "/api/v1/circle"
NOW = datetime(2030, 1, 15, 20, 0, tzinfo=UTC)


def _circle(circle_id: int) -> Circle:
    db.session.expire_all()
    circle = db.session.get(Circle, circle_id)
    assert circle is not None
    return circle


def test_every_role_reads_the_settings_with_their_defaults(client, world: World):
    for role in ("admin", "dispatcher", "coordinator", "doctor"):
        body = client.get(CIRCLE, headers=world.headers[role]).get_json()
        assert (
            body["arrival_minutes"], body["visit_minutes"], body["reminder_minutes"],
            body["police_protocol_reference"],
        ) == (45, 45, 5, None)


def test_the_admin_changes_the_settings(client, world: World):
    response = client.patch(
        CIRCLE,
        json={"arrival_minutes": 30, "visit_minutes": 60, "reminder_minutes": 10,
              "police_protocol_reference": " PZ Bruxelles-Capitale 2024/17 "},
        headers=world.headers["admin"],
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["arrival_minutes"], body["visit_minutes"], body["reminder_minutes"]) == (
        30, 60, 10,
    )
    assert body["police_protocol_reference"] == "PZ Bruxelles-Capitale 2024/17"
    circle = _circle(world.circle.id)
    assert (circle.arrival_minutes, circle.visit_minutes, circle.reminder_minutes) == (30, 60, 10)

    response = client.patch(
        CIRCLE, json={"police_protocol_reference": None}, headers=world.headers["admin"]
    )
    assert response.get_json()["police_protocol_reference"] is None


def test_only_the_admin_changes_them(client, world: World):
    for role in ("dispatcher", "coordinator", "doctor"):
        response = client.patch(
            CIRCLE, json={"arrival_minutes": 30}, headers=world.headers[role]
        )
        assert response.status_code == 403
    assert _circle(world.circle.id).arrival_minutes == 45


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"arrival_minutes": 4}, "arrival_minutes"),
        ({"arrival_minutes": 241}, "arrival_minutes"),
        ({"arrival_minutes": True}, "arrival_minutes"),
        ({"visit_minutes": 4}, "visit_minutes"),
        ({"visit_minutes": 481}, "visit_minutes"),
        ({"reminder_minutes": -1}, "reminder_minutes"),
        ({"reminder_minutes": 61}, "reminder_minutes"),
        ({"visit_minutes": 10, "reminder_minutes": 10}, "reminder_minutes"),
        ({"reminder_minutes": 45}, "reminder_minutes"),  # the circle's visit is 45 min
        ({"visit_minutes": 5}, "visit_minutes"),  # the circle's reminder is 5 min
        ({"police_protocol_reference": "x" * 121}, "police_protocol_reference"),
    ],
)
def test_settings_are_checked_and_nothing_is_written(world: World, data, field):
    with pytest.raises(ValidationFailed) as bad:
        services.update_circle(world.admin, data, NOW)
    assert list(bad.value.fields) == [field]
    db.session.rollback()
    circle = _circle(world.circle.id)
    assert (circle.arrival_minutes, circle.visit_minutes, circle.reminder_minutes) == (45, 45, 5)


def test_a_reminder_of_zero_is_allowed(world: World):
    circle = services.update_circle(world.admin, {"reminder_minutes": 0, "visit_minutes": 5}, NOW)
    assert (circle.reminder_minutes, circle.visit_minutes) == (0, 5)


def test_bad_settings_over_http_name_the_field(client, world: World):
    response = client.patch(
        CIRCLE, json={"visit_minutes": 30, "reminder_minutes": 30}, headers=world.headers["admin"]
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["reminder_minutes"]
    response = client.patch(CIRCLE, json={"arrival_minutes": "45"}, headers=world.headers["admin"])
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["arrival_minutes"]


def test_the_answers_match_the_api_document(app, client, world: World):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    response = client.patch(
        CIRCLE, json={"visit_minutes": 50, "police_protocol_reference": "PZ 5339"},
        headers=world.headers["admin"],
    )
    assert response.status_code == 200
    schema["/api/v1/circle"]["PATCH"].validate_response(response)
    schema["/api/v1/circle"]["GET"].validate_response(
        client.get(CIRCLE, headers=world.headers["doctor"])
    )
