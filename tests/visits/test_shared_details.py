"""Patient, address and checklist: one definition for calls and visits.

The OpenAPI document names each object once and both domains point at it; the
same bad input is refused alike by both; a visit's details follow a call's rules.
"""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime
from typing import Any

import pytest

from oncall.calls.models import Call
from oncall.errors import Validator
from oncall.visits.checks import check_patient
from tests import factories as f
from tests.visits.conftest import counts, make_call

API = "/api/v1"
SHARED = {
    "patient": ("PatientInput", "Patient"),
    "address": ("AddressInput", "Address"),
    "preparation": ("PreparationInput", "Preparation"),
}
NOW = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)


def _refs(node: Any) -> set[str]:
    """Every component a schema fragment points at (directly or through anyOf/allOf)."""
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if "$ref" in node else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def _component(spec: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    (name,) = _refs(fragment)
    return spec["components"]["schemas"][name]


def _nested_refs(spec: dict[str, Any], path: str, method: str, status: str | None) -> dict:
    operation = spec["paths"][path][method]
    if status is None:
        body = operation["requestBody"]["content"]["application/json"]["schema"]
    else:
        body = operation["responses"][status]["content"]["application/json"]["schema"]
    properties = _component(spec, body)["properties"]
    return {name: _refs(properties[name]) for name in SHARED if name in properties}


def test_calls_and_visits_reference_the_same_components(app):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # apispec warns when two schemas claim one name
        spec = app.spec
    inputs = {name: {pair[0]} for name, pair in SHARED.items()}
    outputs = {name: {pair[1]} for name, pair in SHARED.items()}
    assert _nested_refs(spec, "/api/v1/calls", "post", None) == inputs
    assert _nested_refs(spec, "/api/v1/calls/{call_id}", "patch", None) == inputs
    assert _nested_refs(spec, "/api/v1/visits", "post", None) == inputs
    assert _nested_refs(spec, "/api/v1/calls/{call_id}", "get", "200") == outputs
    assert _nested_refs(spec, "/api/v1/visits/{visit_id}", "get", "200") == outputs

    schemas = spec["components"]["schemas"]
    history = schemas["CallerHistoryOut"]["properties"]["visits"]
    visit_in_history = _component(spec, history["items"])["properties"]
    assert _refs(visit_in_history["patient"]) == {"Patient"}
    assert _refs(visit_in_history["address"]) == {"Address"}
    for input_name, output_name in SHARED.values():
        fields = set(schemas[output_name]["properties"])
        holders = [
            n for n, schema in schemas.items() if set(schema.get("properties", {})) == fields
        ]
        assert sorted(holders) == sorted([output_name, input_name])
    assert schemas["PatientInput"]["additionalProperties"] is False
    assert schemas["PatientInput"]["properties"]["age"]["maximum"] == 130
    assert schemas["AddressInput"]["properties"]["postcode"]["maxLength"] == 12


BAD_DETAILS = [
    {"patient": {"phone": "call me"}},
    {"patient": {"phone": "0470 12 34 56\n"}},
    {"patient": {"age": 131, "name": "x" * 161}},
    {"patient": {"usual_gp": "Dr \x00"}},
    {"address": {"box": "b" * 17, "access_notes": "n" * 2001}},
    {"address": {"city": "\ud800", "dwelling": "castle"}},
    {"preparation": {"caller_relation": "boss", "dogs_secured": "perhaps"}},
]


@pytest.mark.parametrize("details", BAD_DETAILS, ids=range(len(BAD_DETAILS)))
def test_calls_and_visits_refuse_the_same_details_alike(client, world, details):
    call = make_call(world.circle)
    before = counts()
    as_call = client.post(f"{API}/calls", json=details, headers=world.headers["dispatcher"])
    as_visit = client.post(
        f"{API}/visits",
        json={"call_id": call.id, "zone_id": world.zone.id, **details},
        headers=world.headers["dispatcher"],
    )
    assert as_call.status_code == as_visit.status_code == 422
    call_fields = as_call.get_json()["error"]["fields"]
    assert call_fields == as_visit.get_json()["error"]["fields"]
    assert set(call_fields) == {
        f"{part}.{field}" for part, fields in details.items() for field in fields
    }
    assert counts() == before


def test_a_visit_checks_its_details_by_the_rules_of_calls(db, world):
    circle = f.make_circle("Cercle FR", country="FR", timezone="Europe/Paris")
    call = Call(patient_birth_date=date(1950, 6, 15))

    v = Validator()
    patient, address, _ = check_patient(
        v,
        {"patient": {"phone": "01 42 68 53 00"}, "address": {"postcode": " 75001 "}},
        NOW,
        circle,
        current=call,
    )
    assert v.errors == {}
    assert patient == {"phone": "+33142685300"}
    assert address == {"postcode": "75001"}

    v = Validator()
    check_patient(
        v,
        {
            "patient": {"age": 40, "phone": "12345"},
            "address": {"postcode": "1000"},
            "preparation": {"caller_relation": "stranger"},
        },
        NOW,
        circle,
        current=call,
    )
    assert set(v.errors) == {
        "patient.age",
        "patient.phone",
        "address.postcode",
        "preparation.caller_relation",
    }
    assert v.errors["patient.age"] == ["Age and birth date disagree."]

    v = Validator()
    check_patient(v, {"patient": {"birth_date": date(1890, 1, 1)}}, NOW, circle)
    assert list(v.errors) == ["patient.birth_date"]
