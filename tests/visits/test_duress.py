"""The duress code: the visit goes on exactly as with the check-in code, and a silent
alert reaches the coordinators and the police.

Whoever watches the doctor's screen must not be able to tell: the same status,
headers and body, about the same time, and no trace in the doctor's own views.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from oncall.accounts import services as accounts
from oncall.alerts.models import Alert, Deadline
from oncall.core import dispatch
from oncall.errors import ValidationFailed
from oncall.extensions import db
from oncall.notify.models import OutboxMessage
from oncall.visits import services
from oncall.visits.models import Visit
from tests import factories as f
from tests.alerts.conftest import webhook
from tests.visits.conftest import NOW, counts, events, make_visit

API = "/api/v1"
LATER = NOW + timedelta(minutes=20)
CHECKIN, DURESS = "2468", "97531"
#: Runs of each kind in the timing test.
RUNS = 15


@pytest.fixture
def coded(world: Any) -> Any:
    """The world's doctor with codes set, reachable coordinator and police contact."""
    accounts.set_codes(world.doctor, {"checkin_code": CHECKIN, "duress_code": DURESS}, NOW)
    webhook(world.doctor, "http://127.0.0.1:9/doctor")
    webhook(world.coordinator, "http://127.0.0.1:9/coordinator")
    f.make_police_contact(world.circle, world.zone, webhook_url="http://127.0.0.1:9/police")
    return world


def _alerts() -> list[Alert]:
    db.session.rollback()
    return list(db.session.scalars(select(Alert).order_by(Alert.id)))


def _messages(alert_id: int) -> list[OutboxMessage]:
    return list(db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.alert_id == alert_id).order_by(OutboxMessage.id)
    ))


def _without_ids(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if k not in ("id", "call_id")}


def _all_rows() -> dict[str, int]:
    extra = {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
        for model in (Deadline, Alert, OutboxMessage)
    }
    return counts() | extra


# --------------------------------------------------------------------------- the use cases


def test_the_duress_code_checks_in_like_the_check_in_code_and_opens_a_silent_alert(coded):
    world = coded
    normal = make_visit(world.zone, "assigned", world.doctor)
    duress = make_visit(world.zone, "assigned", world.doctor)
    place = {"lat": 50.85, "lon": 4.35, "accuracy": 10.0}
    out_normal = services.check_in(world.doctor, normal.id, LATER, location=place, code=CHECKIN)
    assert _alerts() == []
    out_duress = services.check_in(world.doctor, duress.id, LATER, location=place, code=DURESS)
    assert _without_ids(out_duress) == _without_ids(out_normal)
    assert out_duress["status"] == "on_site"
    assert out_duress["deadlines"]["departure"]["state"] == "armed"

    (alert,) = _alerts()
    assert (alert.kind, alert.status, alert.visit_id, alert.doctor_id) == (
        "duress", "open", duress.id, world.doctor.id,
    )
    assert (alert.lat, alert.lon) == (50.85, 4.35)
    targets = {m.recipient_type for m in _messages(alert.id)}
    assert targets == {"user", "police_contact"}
    assert all(m.recipient_id != world.doctor.id for m in _messages(alert.id)
               if m.recipient_type == "user")  # the doctor's phone stays silent


def test_the_alerts_messages_are_handed_to_a_worker(app, coded):
    world = coded
    visit = make_visit(world.zone, "assigned", world.doctor)
    sender = dispatch.sender_of(app)
    before = len(sender.sent)
    services.check_in(world.doctor, visit.id, LATER, code=DURESS)
    (alert,) = _alerts()
    handed = [i for task, args in sender.sent[before:] if task == dispatch.DELIVER for i in args[0]]
    assert {m.id for m in _messages(alert.id)} <= set(handed)
    assert handed


def test_no_code_or_the_check_in_code_open_nothing(coded):
    world = coded
    for code in (None, CHECKIN):
        visit = make_visit(world.zone, "assigned", world.doctor)
        services.check_in(world.doctor, visit.id, LATER, code=code)
        services.check_out(world.doctor, visit.id, LATER + timedelta(minutes=20), code=code)
    assert _alerts() == []


def test_a_wrong_code_is_refused_and_writes_nothing(coded):
    world = coded
    visit = make_visit(world.zone, "assigned", world.doctor)
    before = _all_rows()
    for code in ("1111", "", "24680", DURESS + "1"):
        with pytest.raises(ValidationFailed) as bad:
            services.check_in(world.doctor, visit.id, LATER, code=code)
        assert list(bad.value.fields) == ["code"]
    assert _all_rows() == before
    assert db.session.get(Visit, visit.id).status == "assigned"


def test_a_code_from_a_doctor_without_codes_is_wrong(world):
    visit = make_visit(world.zone, "assigned", world.doctor)
    with pytest.raises(ValidationFailed) as bad:
        services.check_in(world.doctor, visit.id, LATER, code=CHECKIN)
    assert list(bad.value.fields) == ["code"]
    assert services.check_in(world.doctor, visit.id, LATER)["status"] == "on_site"


def test_the_duress_code_at_check_out(coded):
    world = coded
    visit = make_visit(world.zone, "assigned", world.doctor)
    services.check_in(world.doctor, visit.id, LATER, code=CHECKIN)
    with pytest.raises(ValidationFailed):
        services.check_out(world.doctor, visit.id, LATER + timedelta(minutes=5), code="0000")
    out = services.check_out(
        world.doctor, visit.id, LATER + timedelta(minutes=5), outcome_note="Fine", code=DURESS
    )
    assert out["status"] == "completed"
    assert out["deadlines"]["departure"]["state"] == "met"
    (alert,) = _alerts()
    assert (alert.kind, alert.visit_id) == ("duress", visit.id)


def test_the_duress_code_twice_on_a_visit_keeps_one_alert(coded):
    world = coded
    visit = make_visit(world.zone, "assigned", world.doctor)
    services.check_in(world.doctor, visit.id, LATER, code=DURESS)
    (alert,) = _alerts()
    sent = len(_messages(alert.id))
    services.check_out(world.doctor, visit.id, LATER + timedelta(minutes=5), code=DURESS)
    assert [a.id for a in _alerts()] == [alert.id]
    assert len(_messages(alert.id)) == sent  # the police are not called a second time
    kinds = [e.kind for e in events(alert.id, "alert")]
    assert "alert.duress_repeated" in kinds


# --------------------------------------------------------------------------- over HTTP


def _fixed_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    instant = datetime.now(UTC).replace(microsecond=123456)
    monkeypatch.setattr("oncall.visits.api.utcnow", lambda: instant)
    return instant


def test_the_http_answers_are_identical(client, coded, monkeypatch):
    world = coded
    _fixed_clock(monkeypatch)
    normal = make_visit(world.zone, "assigned", world.doctor)
    duress = make_visit(world.zone, "assigned", world.doctor)
    assert len(str(normal.id)) == len(str(duress.id))
    place = {"lat": 50.85, "lon": 4.35}
    answers = {}
    for visit, code in ((normal, CHECKIN), (duress, DURESS)):
        answers[code] = client.post(
            f"{API}/visits/{visit.id}/check-in",
            json={"location": place, "code": code},
            headers=world.headers["doctor"],
        )
    a, b = answers[CHECKIN], answers[DURESS]
    assert a.status_code == b.status_code == 200
    assert sorted(a.headers.items()) == sorted(b.headers.items())
    assert len(a.get_data()) == len(b.get_data())
    assert _without_ids(a.get_json()) == _without_ids(b.get_json())
    assert [alert.visit_id for alert in _alerts()] == [duress.id]

    for visit, code in ((normal, CHECKIN), (duress, DURESS)):
        answers[code] = client.post(
            f"{API}/visits/{visit.id}/check-out", json={"code": code},
            headers=world.headers["doctor"],
        )
    a, b = answers[CHECKIN], answers[DURESS]
    assert a.status_code == b.status_code == 200
    assert sorted(a.headers.items()) == sorted(b.headers.items())
    assert _without_ids(a.get_json()) == _without_ids(b.get_json())
    assert [alert.visit_id for alert in _alerts()] == [duress.id]  # marked again, not doubled


def test_a_wrong_code_over_http_names_the_field(client, coded):
    world = coded
    visit = make_visit(world.zone, "assigned", world.doctor)
    response = client.post(
        f"{API}/visits/{visit.id}/check-in", json={"code": "0000"}, headers=world.headers["doctor"]
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["code"]
    assert db.session.get(Visit, visit.id).status == "assigned"


def test_the_doctors_views_never_show_the_duress_alert(client, coded, monkeypatch):
    world = coded
    _fixed_clock(monkeypatch)
    normal = make_visit(world.zone, "assigned", world.doctor)
    duress = make_visit(world.zone, "assigned", world.doctor)
    for visit, code in ((normal, CHECKIN), (duress, DURESS)):
        response = client.post(
            f"{API}/visits/{visit.id}/check-in", json={"code": code},
            headers=world.headers["doctor"],
        )
        assert response.status_code == 200

    def kinds(visit_id: int, role: str) -> list[str]:
        body = client.get(f"{API}/visits/{visit_id}", headers=world.headers[role]).get_json()
        return [e["kind"] for e in body["timeline"]]

    assert kinds(duress.id, "doctor") == kinds(normal.id, "doctor")
    assert not [k for k in kinds(duress.id, "doctor") if k.startswith("alert.")]
    assert "alert.opened" in kinds(duress.id, "dispatcher")
    assert "alert.opened" in kinds(duress.id, "coordinator")
    doctor_timeline = services.visit_timeline(world.doctor, duress.id)
    assert "alert.opened" not in [e["kind"] for e in doctor_timeline]
    listed = client.get(f"{API}/visits", headers=world.headers["doctor"]).get_json()["items"]
    by_id = {item["id"]: _without_ids(item) for item in listed}
    assert by_id[normal.id] == by_id[duress.id]


def test_the_duress_code_takes_about_as_long(client, coded, monkeypatch):
    """Medians over many runs, alternating the two codes; a wide margin, so only a
    visibly slower duress check-in (one that waits on something) fails it."""
    world = coded
    _fixed_clock(monkeypatch)
    visits = [make_visit(world.zone, "assigned", world.doctor).id for _ in range(2 * RUNS)]
    took: dict[str, list[float]] = {CHECKIN: [], DURESS: []}
    for n, visit_id in enumerate(visits):
        code = CHECKIN if n % 2 == 0 else DURESS
        start = time.perf_counter()
        response = client.post(
            f"{API}/visits/{visit_id}/check-in", json={"code": code},
            headers=world.headers["doctor"],
        )
        took[code].append(time.perf_counter() - start)
        assert response.status_code == 200
    assert len(_alerts()) == RUNS
    normal, duress = statistics.median(took[CHECKIN]), statistics.median(took[DURESS])
    report = f"normal {normal * 1000:.1f} ms, duress {duress * 1000:.1f} ms"
    assert duress < normal * 1.5 + 0.030, report
