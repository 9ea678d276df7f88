"""The police briefing: JSON by default, a printable page on request; roles, circles, access log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from oncall.core.clock import utcnow
from oncall.extensions import db
from tests.alerts.conftest import API, access_rows, open_by_hand, reachable
from tests.visits.conftest import make_call, make_visit


def _scene(world: Any) -> Any:
    """A doctor with a car, on site at a flat with difficult access, then a panic."""
    reachable(world)
    world.circle.police_protocol_reference = "CIRCLE-PROTO-1"
    doctor = world.doctor
    doctor.vehicle_make, doctor.vehicle_colour, doctor.vehicle_plate = "Skoda", "grey", "1-ABC-234"
    doctor.phone = "+32470000001"
    db.session.commit()
    now = utcnow()
    visit = make_visit(
        world.zone, "on_site", doctor, now,
        call=make_call(world.circle, now, patient_name="Jean <script>alert(1)</script> Peeters"),
        checked_in_at=now - timedelta(minutes=20),
        patient_phone="+3221112233",
        patient_age=67,
        address_number="12",
        address_postcode="1000",
        address_floor="4th, left",
        address_access_notes="Code 4567 at the side gate",
        address_dwelling="flat",
        dogs_secured=False,
        third_person_present=True,
        identity_verified=False,
        last_lat=50.846123, last_lon=4.352456, last_accuracy_m=8.0,
        last_location_at=now - timedelta(minutes=3),
    )
    return open_by_hand(world, "panic", visit=visit), visit


def test_the_briefing_as_json_has_everything_the_police_need(client: Any, world: Any) -> None:
    alert, visit = _scene(world)
    response = client.get(f"{API}/alerts/{alert.id}/briefing", headers=world.headers["dispatcher"])
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["alert"]["id"] == alert.id
    assert body["alert"]["kind"] == "panic"
    assert body["doctor"]["name"] == world.doctor.name
    assert body["doctor"]["vehicle"] == {"make": "Skoda", "colour": "grey", "plate": "1-ABC-234"}
    address = body["visit"]["address"]
    assert address["floor"] == "4th, left"
    assert address["access_notes"] == "Code 4567 at the side gate"
    assert address["street"] == "Rue Haute"
    assert body["patient"]["name"].startswith("Jean ")
    assert body["patient"]["phone"] == "+3221112233"
    assert body["last_check_in"]["visit_id"] == visit.id
    assert body["last_location"]["lat"] == pytest.approx(50.846123)
    assert "Dogs may not be secured." in body["risk_notes"]
    assert "A third person is present in the home." in body["risk_notes"]
    # The zone's police contact's own reference comes before the circle's.
    assert body["circle"]["protocol_reference"] == "PZ-NORD-7"
    assert body["visit"]["reason"] is None
    assert [(r.subject_type, r.subject_id, r.action) for r in access_rows(
        world.dispatcher.id)] == [("visit", visit.id, "alert_briefing")]


@pytest.mark.parametrize(
    ("query", "headers"),
    [("?format=html", {}), ("", {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})],
)
def test_the_printable_page(client: Any, world: Any, query: str, headers: dict[str, str]) -> None:
    alert, _visit = _scene(world)
    response = client.get(f"{API}/alerts/{alert.id}/briefing{query}",
                          headers={**world.headers["coordinator"], **headers})
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = response.get_data(as_text=True)
    for expected in (
        world.doctor.name, "Skoda grey", "1-ABC-234", "+32470000001",
        "Rue Haute 12", "1000 Bruxelles", "4th, left",
        "Code 4567 at the side gate", "Flat", "+3221112233", "67",
        "50.84612, 4.35246", "8 m",
        "Dogs may not be secured.", "A third person is present in the home.",
        "PZ-NORD-7", "PANIC BUTTON", "Europe/Brussels", "@media print",
    ):
        assert expected in page, expected
    # Escaped, not executed; nothing loaded from elsewhere.
    assert "<script>" not in page
    assert "Jean &lt;script&gt;alert(1)&lt;/script&gt; Peeters" in page
    assert "<link" not in page
    assert "src=" not in page
    assert "<script" not in page
    assert len(access_rows(world.coordinator.id)) == 1


def test_the_page_times_are_local_to_the_circle(client: Any, world: Any) -> None:
    alert, visit = _scene(world)
    local = visit.checked_in_at.astimezone(ZoneInfo("Europe/Brussels"))
    response = client.get(f"{API}/alerts/{alert.id}/briefing?format=html",
                          headers=world.headers["admin"])
    assert local.strftime("%d/%m/%Y %H:%M") in response.get_data(as_text=True)


def test_json_stays_the_default_for_api_clients(client: Any, world: Any) -> None:
    alert, _visit = _scene(world)
    for accept in (None, "*/*", "application/json"):
        headers = dict(world.headers["admin"])
        if accept:
            headers["Accept"] = accept
        response = client.get(f"{API}/alerts/{alert.id}/briefing", headers=headers)
        assert response.mimetype == "application/json", accept
    forced = client.get(f"{API}/alerts/{alert.id}/briefing?format=json",
                        headers={**world.headers["admin"], "Accept": "text/html"})
    assert forced.mimetype == "application/json"


def test_a_briefing_without_a_visit_still_names_the_doctor(client: Any, world: Any) -> None:
    reachable(world)
    alert = open_by_hand(world, "panic")
    response = client.get(f"{API}/alerts/{alert.id}/briefing", headers=world.headers["admin"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["doctor"]["name"] == world.doctor.name
    assert body["visit"] is None
    assert body["patient"] is None
    page = client.get(f"{API}/alerts/{alert.id}/briefing?format=html",
                      headers=world.headers["admin"])
    assert "No visit is linked to this alert." in page.get_data(as_text=True)
    assert [(r.subject_type, r.subject_id) for r in access_rows(world.admin.id)] == [
        ("alert", alert.id), ("alert", alert.id)
    ]


def test_briefing_roles_and_circles(client: Any, world: Any, other_world: Any) -> None:
    alert, _visit = _scene(world)
    path = f"{API}/alerts/{alert.id}/briefing"
    assert client.get(path, headers=world.headers["doctor"]).status_code == 403
    assert client.get(path).status_code == 401
    for role in ("admin", "dispatcher", "coordinator"):
        response = client.get(path, headers=other_world.headers[role])
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "alert_not_found"
    assert client.get(f"{path}?format=pdf", headers=world.headers["admin"]).status_code == 422
