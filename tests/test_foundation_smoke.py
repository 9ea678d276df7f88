from tests.conftest import World


def test_health_answers(client):
    assert client.get("/health").get_json() == {"status": "ok"}


def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_world_fixture_builds(world: World):
    assert world.doctor.circle_id == world.circle.id
