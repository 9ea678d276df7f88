"""The one error shape, on every API path and for every kind of failure."""

from __future__ import annotations


def _error(response):
    body = response.get_json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    return body["error"]


def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_wrong_method_is_json_405_with_allow(client, world):
    response = client.delete("/api/v1/zones", headers=world.headers["admin"])
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_missing_authentication_is_401(client, world):
    response = client.get("/api/v1/zones")
    assert response.status_code == 401
    assert _error(response)["code"] == "authentication_required"


def test_malformed_bearer_header_is_401(client, world):
    response = client.get("/api/v1/zones", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401
    assert _error(response)["code"] == "bad_authorization_header"


def test_malformed_json_is_400_and_writes_nothing(client, world, db):
    from oncall.circles.models import Zone

    before = db.session.query(Zone).count()
    response = client.post(
        "/api/v1/zones",
        data="{not json",
        headers={**world.headers["admin"], "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert _error(response)["code"] == "bad_request"
    assert db.session.query(Zone).count() == before


def test_validation_error_names_each_field(client, world):
    response = client.post(
        "/api/v1/zones", json={"name": "", "colour": "red"}, headers=world.headers["admin"]
    )
    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "validation_failed"
    assert "name" in error["fields"]
    assert "colour" in error["fields"]  # unknown fields are refused, by name


def test_console_404_stays_html(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
