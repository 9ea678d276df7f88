"""A visit's details follow the circle's rules through the API."""

from __future__ import annotations

from datetime import date

from oncall.core.clock import utcnow
from tests import factories as f
from tests.visits.conftest import counts, make_call

API = "/api/v1"


def test_a_visit_reads_phone_postcode_and_age_as_a_call_does(client, db):
    circle = f.make_circle("Cercle FR", country="FR", timezone="Europe/Paris")
    zone = f.make_zone(circle)
    headers = f.auth(f.make_user(circle, "dispatcher"))
    call = make_call(circle, utcnow(), patient_age=None, patient_birth_date=date(1950, 6, 15))
    base = {"call_id": call.id, "zone_id": zone.id}

    before = counts()
    for details, field in (
        ({"address": {"postcode": "1000"}}, "address.postcode"),
        ({"patient": {"phone": "12345"}}, "patient.phone"),
        ({"patient": {"age": 40}}, "patient.age"),
        ({"patient": {"birth_date": "1890-01-01"}}, "patient.birth_date"),
    ):
        refused = client.post(f"{API}/visits", json=base | details, headers=headers)
        assert refused.status_code == 422, details
        assert list(refused.get_json()["error"]["fields"]) == [field]
    assert counts() == before

    created = client.post(
        f"{API}/visits",
        json=base
        | {"patient": {"phone": "01 42 68 53 00"}, "address": {"postcode": " 75001 "}},
        headers=headers,
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["patient"]["phone"] == "+33142685300"
    assert body["address"]["postcode"] == "75001"
    assert body["patient"]["birth_date"] == "1950-06-15"
