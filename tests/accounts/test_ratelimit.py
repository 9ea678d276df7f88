"""Login rate limits, on Redis and in process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from oncall.accounts import ratelimit
from oncall.accounts.services import ADDRESS_LIMIT_FACTOR
from oncall.errors import RateLimited
from tests import factories as f
from tests.conftest import World

TOKENS = "/api/v1/auth/tokens"


def attempt(client, email: str, password: str = "wrong password!", addr: str = "192.0.2.10"):
    return client.post(
        TOKENS,
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": addr},
    )


def _keys(redis_url: str, prefix: str) -> list[bytes]:
    return list(redis.Redis.from_url(redis_url).scan_iter(match=f"{prefix}*"))


def test_eleventh_attempt_in_the_window_answers_429(
    client, world: World, settings, own_rate_limit_window: str
):
    assert settings.login_rate_limit == 10
    for _ in range(10):
        assert attempt(client, world.admin.email).status_code == 401
    response = attempt(client, world.admin.email, f.PASSWORD)  # even the right password
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= settings.login_rate_window_seconds
    # The counts live in Redis, shared by every process.
    assert _keys(settings.redis_url, own_rate_limit_window)


def test_the_email_is_limited_from_any_address(client, world: World):
    for i in range(10):
        attempt(client, world.admin.email, addr=f"198.51.100.{i}")
    response = attempt(client, world.admin.email.upper(), f.PASSWORD, addr="203.0.113.7")
    assert response.status_code == 429


def test_another_email_from_the_same_address_works_until_the_address_limit(
    client, app, world: World, monkeypatch
):
    settings = app.config["ONCALL"]
    monkeypatch.setitem(app.config, "ONCALL", settings.with_(login_rate_limit=2))
    address_limit = 2 * ADDRESS_LIMIT_FACTOR
    attempt(client, world.admin.email)
    attempt(client, world.admin.email)
    assert attempt(client, world.admin.email).status_code == 429  # 3 attempts on the address
    # Other people behind the same address still log in.
    assert attempt(client, world.doctor.email, f.PASSWORD).status_code == 201
    used = 4
    emails = iter(f"someone{i}@example.test" for i in range(100))
    while used < address_limit:
        assert attempt(client, next(emails)).status_code == 401
        used += 1
    response = attempt(client, world.dispatcher.email, f.PASSWORD)
    assert response.status_code == 429
    assert "Retry-After" in response.headers
    # Another address is not affected.
    ok = attempt(client, world.dispatcher.email, f.PASSWORD, addr="192.0.2.99")
    assert ok.status_code == 201


def test_console_and_api_share_the_limit(client, world: World):
    for _ in range(10):
        attempt(client, world.admin.email)
    client.get("/login")
    with client.session_transaction() as session:
        token = session["csrf"]
    response = client.post(
        "/login",
        data={"email": world.admin.email, "password": f.PASSWORD, "csrf_token": token},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )
    assert response.status_code == 429
    assert "Retry-After" in response.headers


def _at(seconds: int) -> datetime:
    return datetime(2026, 1, 5, 12, 0, tzinfo=UTC) + timedelta(seconds=seconds)


def test_hit_counts_per_fixed_window(app):
    with app.test_request_context():
        counts = [ratelimit.hit("k", 2, 60, _at(s)).count for s in (0, 10, 59)]
        assert counts == [1, 2, 3]
        last = ratelimit.hit("k", 2, 60, _at(59))
        assert not last.allowed
        assert last.retry_after == 1
        fresh = ratelimit.hit("k", 2, 60, _at(60))
        assert fresh.count == 1
        assert fresh.allowed
        assert fresh.retry_after == 60


@pytest.mark.parametrize("url", ["", "redis://127.0.0.1:1/0"], ids=["embedded", "unreachable"])
def test_without_redis_the_process_counts(app, monkeypatch, url: str):
    monkeypatch.setitem(app.config, "ONCALL", app.config["ONCALL"].with_(redis_url=url))
    with app.test_request_context():
        ratelimit.clear()
        ratelimit.enforce([("a", 2), ("b", 5)], 60, _at(0))
        ratelimit.enforce([("a", 2), ("b", 5)], 60, _at(1))
        with pytest.raises(RateLimited) as refused:
            ratelimit.enforce([("a", 2), ("b", 5)], 60, _at(2))
        assert refused.value.headers == {"Retry-After": "58"}
        assert ratelimit.hit("b", 5, 60, _at(3)).count == 4
        assert ratelimit.hit("a", 2, 60, _at(61)).count == 1


def test_clear_forgets_the_counts(app, settings, own_rate_limit_window: str):
    with app.test_request_context():
        ratelimit.hit("x", 1, 60, _at(0))
        assert _keys(settings.redis_url, own_rate_limit_window)
        ratelimit.clear()
        assert not _keys(settings.redis_url, own_rate_limit_window)
        assert ratelimit.hit("x", 1, 60, _at(0)).count == 1
