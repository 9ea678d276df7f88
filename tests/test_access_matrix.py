"""Every API route, called by every role of the circle, by anonymous clients and by
every role of another circle: the status code of each call is asserted.

The table below is the access policy. A route served by the application but
missing from the table fails the test, so a new route cannot ship unreviewed.

Allowed roles get the route's "allowed" status (a minimal request: GET reads,
writes with an empty body, which must be refused by validation when the route
needs fields). Other roles of the circle get 403. Anonymous clients get 401.
Users of another circle get 403 where their role is refused, and otherwise 404
for the first circle's records (they cannot tell them from absent ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from oncall.calls.models import Call
from oncall.calls.services import find_or_create_caller
from oncall.core.clock import utcnow
from oncall.extensions import db
from oncall.visits.models import Visit
from tests import factories as f

ALL = ("admin", "dispatcher", "coordinator", "doctor")
STAFF = ("admin", "dispatcher", "coordinator")


@dataclass
class Route:
    roles: tuple[str, ...] | str  # a role tuple, "public" or "signature"
    allowed: int  # status for an allowed role of the circle
    body: dict[str, Any] | None = None
    # Roles that are allowed but see only their own rows, answering 404 here.
    own_only: tuple[str, ...] = ()


# (method, rule) -> Route
POLICY: dict[tuple[str, str], Route] = {
    ("POST", "/api/v1/auth/tokens"): Route("public", 422, {}),
    ("GET", "/api/v1/auth/tokens"): Route(ALL, 200),
    ("DELETE", "/api/v1/auth/tokens/<int:token_id>"): Route(ALL, 204),
    ("GET", "/api/v1/me"): Route(ALL, 200),
    ("PATCH", "/api/v1/me"): Route(ALL, 200, {}),
    ("GET", "/api/v1/users"): Route(STAFF, 200),
    ("POST", "/api/v1/users"): Route(("admin",), 422, {}),
    ("GET", "/api/v1/users/<int:user_id>"): Route(STAFF, 200),
    ("PATCH", "/api/v1/users/<int:user_id>"): Route(("admin",), 200, {}),
    ("POST", "/api/v1/users/<int:user_id>/deactivate"): Route(("admin",), 200, {}),
    ("GET", "/api/v1/circle"): Route(ALL, 200),
    ("PATCH", "/api/v1/circle"): Route(("admin",), 200, {}),
    ("GET", "/api/v1/zones"): Route(ALL, 200),
    ("POST", "/api/v1/zones"): Route(("admin",), 422, {}),
    ("PATCH", "/api/v1/zones/<int:zone_id>"): Route(("admin",), 200, {}),
    ("GET", "/api/v1/police-contacts"): Route(STAFF, 200),
    ("POST", "/api/v1/police-contacts"): Route(("admin",), 422, {}),
    ("PATCH", "/api/v1/police-contacts/<int:contact_id>"): Route(("admin",), 200, {}),
    ("GET", "/api/v1/escalation-policies"): Route(("admin", "coordinator"), 200),
    ("GET", "/api/v1/escalation-policies/<kind>"): Route(("admin", "coordinator"), 200),
    ("PUT", "/api/v1/escalation-policies/<kind>"): Route(("admin",), 422, {}),
    ("GET", "/api/v1/shifts"): Route(ALL, 200),
    ("POST", "/api/v1/shifts"): Route(("admin",), 422, {}),
    ("PATCH", "/api/v1/shifts/<int:shift_id>"): Route(("admin",), 200, {}),
    ("DELETE", "/api/v1/shifts/<int:shift_id>"): Route(("admin",), 204),
    ("GET", "/api/v1/on-duty"): Route(STAFF, 200),
    ("POST", "/api/v1/telephony/events"): Route("signature", 401, {}),
    ("GET", "/api/v1/calls"): Route(STAFF, 200),
    ("POST", "/api/v1/calls"): Route(("admin", "dispatcher"), 422, {"outcome": "nonsense"}),
    ("GET", "/api/v1/calls/<int:call_id>"): Route(STAFF, 200),
    ("PATCH", "/api/v1/calls/<int:call_id>"): Route(("admin", "dispatcher"), 200, {}),
    ("GET", "/api/v1/callers/<path:number>"): Route(STAFF, 200),
    ("GET", "/api/v1/visits"): Route(ALL, 200),
    ("POST", "/api/v1/visits"): Route(("admin", "dispatcher"), 422, {}),
    ("GET", "/api/v1/visits/<int:visit_id>"): Route(ALL, 200),
    ("POST", "/api/v1/visits/<int:visit_id>/assign"): Route(STAFF, 422, {"doctor_id": "x"}),
    ("POST", "/api/v1/visits/<int:visit_id>/cancel"): Route(STAFF, 422, {}),
    ("POST", "/api/v1/visits/<int:visit_id>/check-in"): Route(("doctor",), 200, {}),
    ("POST", "/api/v1/visits/<int:visit_id>/check-out"): Route(("doctor",), 409, {}),
    ("GET", "/api/v1/doctors/<int:doctor_id>/itinerary"): Route(ALL, 200),
    ("POST", "/api/v1/visits/<int:visit_id>/extend"): Route(("doctor",), 409, {}),
    ("PUT", "/api/v1/me/codes"): Route(("doctor",), 422, {}),
    ("POST", "/api/v1/panic"): Route(("doctor",), 201, {}),
    ("POST", "/api/v1/panic/<int:alert_id>/cancel"): Route(("doctor",), 422, {}),
    ("GET", "/api/v1/alerts"): Route(STAFF, 200),
    ("GET", "/api/v1/alerts/<int:alert_id>"): Route(STAFF, 200),
    ("POST", "/api/v1/alerts/<int:alert_id>/acknowledge"): Route(("admin", "coordinator"), 200, {}),
    ("POST", "/api/v1/alerts/<int:alert_id>/escalate"): Route(("admin", "coordinator"), 200, {}),
    ("POST", "/api/v1/alerts/<int:alert_id>/resolve"): Route(("admin", "coordinator"), 422, {}),
    ("GET", "/api/v1/alerts/<int:alert_id>/briefing"): Route(STAFF, 200),
    ("GET", "/api/v1/notification-channels"): Route(ALL, 200),
    ("POST", "/api/v1/notification-channels"): Route(ALL, 422, {}),
    ("GET", "/api/v1/notification-channels/webhook-secret"): Route(("admin",), 200),
    ("PATCH", "/api/v1/notification-channels/<int:channel_id>"): Route(ALL, 200, {}),
    ("DELETE", "/api/v1/notification-channels/<int:channel_id>"): Route(ALL, 204),
    ("GET", "/api/v1/stream"): Route(STAFF, 200),
}

NUMBER = "+32470123456"


def _fixtures(world) -> dict[str, Callable[[str], Any]]:
    """Builders of path values pointing at records of ``world``'s circle.

    Each takes the acting role, so that a doctor is pointed at their own visit and
    destructive routes get a fresh target every time.
    """
    now = utcnow()

    def call() -> Call:
        caller = find_or_create_caller(world.circle.id, NUMBER, now)
        row = Call(
            circle_id=world.circle.id,
            caller_id=caller.id,
            caller_number=NUMBER,
            state="answered",
            created_at=now,
            updated_at=now,
        )
        db.session.add(row)
        db.session.commit()
        return row

    def visit(role: str) -> int:
        row = Visit(
            circle_id=world.circle.id,
            call_id=call().id,
            zone_id=world.zone.id,
            doctor_id=world.doctor.id,
            status="assigned",
            created_at=now,
            updated_at=now,
            assigned_at=now,
        )
        db.session.add(row)
        db.session.commit()
        return row.id

    def token(role: str) -> int:
        user = getattr(world, role)
        f.token_for(user)
        from oncall.accounts.models import ApiToken

        return (
            db.session.query(ApiToken)
            .filter_by(user_id=user.id)
            .order_by(ApiToken.id.desc())
            .first()
            .id
        )

    def shift(role: str) -> int:
        return f.make_shift(
            world.zone, world.doctor, now + timedelta(days=2), now + timedelta(days=2, hours=12)
        ).id

    def alert(role: str) -> int:
        from oncall.alerts.engine import open_alert

        row = open_alert(
            circle_id=world.circle.id, kind="panic", now=now, doctor_id=world.doctor.id
        )
        db.session.commit()
        return row.id

    def channel(role: str) -> int:
        """The acting role's own channel (only an admin manages other people's)."""
        from oncall.notify.models import NotificationChannel

        row = NotificationChannel(
            circle_id=world.circle.id, user_id=getattr(world, role).id, kind="email",
            address=f"{role}@example.test", active=True, key_version=1,
            created_at=now, updated_at=now,
        )
        db.session.add(row)
        db.session.commit()
        return row.id

    contact = f.make_police_contact(world.circle)
    call()  # so that the caller number has history
    return {
        "token_id": token,
        "user_id": lambda role: f.make_user(world.circle, "dispatcher").id,
        "zone_id": lambda role: world.zone.id,
        "contact_id": lambda role: contact.id,
        "kind": lambda role: "panic",
        "shift_id": shift,
        "call_id": lambda role: call().id,
        "number": lambda role: NUMBER,
        "visit_id": visit,
        "doctor_id": lambda role: world.doctor.id,
        "alert_id": alert,
        "channel_id": channel,
    }


def _path(rule: str, values: dict[str, Callable[[str], Any]], role: str) -> str:
    import re

    def fill(match: re.Match[str]) -> str:
        return str(values[match.group(1)](role))

    path = re.sub(r"<(?:\w+:)?(\w+)>", fill, rule)
    if rule == "/api/v1/on-duty":
        path += f"?zone={values['zone_id'](role)}"
    return path


def _api_rules(app) -> set[tuple[str, str]]:
    rules = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule.endswith("openapi.json"):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            rules.add((method, rule.rule))
    return rules


def test_policy_covers_every_route(app):
    served = _api_rules(app)
    assert served - set(POLICY) == set(), "routes without an access policy"
    assert set(POLICY) - served == set(), "policy for routes that do not exist"


def _call(client, method: str, path: str, headers: dict[str, str], body: Any):
    kwargs: dict[str, Any] = {"headers": headers}
    if method in {"POST", "PUT", "PATCH"}:
        kwargs["json"] = body if body is not None else {}
    return client.open(path, method=method, **kwargs)


@pytest.mark.parametrize(("method", "rule"), sorted(POLICY), ids=lambda v: str(v))
def test_route_access(client, world, other_world, method: str, rule: str):
    route = POLICY[(method, rule)]
    values = _fixtures(world)
    failures: list[str] = []

    def expect(who: str, headers: dict[str, str], role: str, status: int) -> None:
        path = _path(rule, values, role)
        response = _call(client, method, path, headers, route.body)
        if response.status_code != status:
            failures.append(
                f"{who}: {method} {path} -> {response.status_code}, expected {status}: "
                f"{response.get_data(as_text=True)[:300]}"
            )
        elif response.status_code >= 400:
            assert "error" in response.get_json(), f"{who}: error not in the JSON shape"

    # Anonymous.
    anonymous_status = route.allowed if route.roles == "public" else 401
    expect("anonymous", {}, "admin", anonymous_status)

    for role in ALL:
        # A role of this circle.
        if route.roles == "public":
            status = route.allowed
        elif route.roles == "signature":
            status = 401
        elif role in route.roles:
            status = route.allowed
        else:
            status = 403
        expect(f"{role} of the circle", world.headers[role], role, status)

        # The same role in another circle, pointed at this circle's records.
        if route.roles in ("public", "signature"):
            other_status = status
        elif role not in route.roles:
            other_status = 403
        elif rule.endswith("<kind>"):
            # A kind names a policy of the caller's own circle, not a record.
            other_status = route.allowed
        elif "<" in rule or rule == "/api/v1/on-duty":
            other_status = 404
        else:
            other_status = route.allowed
        expect(f"{role} of another circle", other_world.headers[role], role, other_status)

    assert not failures, "\n".join(failures)


LISTS = [
    "/api/v1/users",
    "/api/v1/zones",
    "/api/v1/police-contacts",
    "/api/v1/shifts",
    "/api/v1/calls",
    "/api/v1/visits",
]


@pytest.mark.parametrize("path", LISTS)
def test_lists_never_show_another_circles_rows(client, world, other_world, path):
    values = _fixtures(world)
    values["visit_id"]("doctor")
    values["shift_id"]("admin")
    mine = client.get(path, headers=world.headers["admin"])
    theirs = client.get(path, headers=other_world.headers["admin"])
    assert mine.status_code == theirs.status_code == 200

    def ids(response) -> set[int]:
        body = response.get_json()
        items = body["items"] if isinstance(body, dict) else body
        return {item["id"] for item in items}

    assert ids(mine), f"{path}: the first circle sees its own rows"
    assert ids(mine).isdisjoint(ids(theirs)), f"{path}: rows leak across circles"
