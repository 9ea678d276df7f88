"""Readiness: the outside monitor's view of whether deadlines can be lost right now."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from apiflask import APIFlask
from flask.testing import FlaskClient

from config.settings import Settings
from oncall import create_app
from oncall.alerts import deadlines
from oncall.core import dispatch, health
from oncall.core.clock import utcnow
from oncall.extensions import db
from oncall.notify import outbox
from tests.visits.conftest import make_visit

BROKER_URL = "redis://127.0.0.1:6379/12"


@dataclass
class FakeSweeper:
    """What the health check reads of the embedded sweeper's state."""

    last_heartbeat: datetime | None
    running: bool = True


@pytest.fixture
def embedded(app: APIFlask, monkeypatch: pytest.MonkeyPatch) -> APIFlask:
    """The shared application in embedded mode (the test profile has dispatch off)."""
    monkeypatch.setitem(app.extensions, dispatch.EXTENSION_KEY, dispatch.EmbeddedSender())
    return app


@pytest.fixture
def sweeping(embedded: APIFlask, monkeypatch: pytest.MonkeyPatch) -> FakeSweeper:
    """An embedded sweeper that swept just now (for the checks that are not about it)."""
    state = FakeSweeper(last_heartbeat=utcnow())
    monkeypatch.setitem(embedded.extensions, health.SCHEDULER_EXTENSION_KEY, state)
    return state


def _ready(client: FlaskClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/health/ready")
    return response.status_code, response.get_json()


def test_ready_when_everything_is_on_time(client: FlaskClient, sweeping: FakeSweeper) -> None:
    status, body = _ready(client)
    assert status == 200, body
    assert body["status"] == "ok"
    checks = body["checks"]
    assert checks["database"]["ok"]
    assert checks["broker"]["mode"] == "embedded"
    assert checks["scheduler"]["mode"] == "embedded"
    assert checks["scheduler"]["ok"]
    assert checks["scheduler"]["age_seconds"] < 5
    assert checks["deadlines"]["oldest_overdue_deadline_seconds"] is None
    assert checks["outbox"]["oldest_pending_outbox_seconds"] is None
    assert checks["deadlines"]["bound_seconds"] == health.OVERDUE_DEADLINE_BOUND_SECONDS
    assert checks["outbox"]["bound_seconds"] == health.PENDING_OUTBOX_BOUND_SECONDS


def test_with_dispatch_off_no_scheduler_is_expected(client: FlaskClient) -> None:
    status, body = _ready(client)
    assert status == 200, body
    assert body["checks"]["scheduler"]["mode"] == "off"


def test_not_ready_without_a_sweeper(client: FlaskClient, embedded: APIFlask,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(embedded.extensions, health.SCHEDULER_EXTENSION_KEY, raising=False)
    status, body = _ready(client)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["checks"]["scheduler"] == {
        "ok": False, "mode": "embedded", "running": False, "last_heartbeat": None,
        "age_seconds": None, "bound_seconds": health.SCHEDULER_STALE_SECONDS,
    }


def test_not_ready_when_the_sweeper_is_silent(client: FlaskClient, sweeping: FakeSweeper) -> None:
    sweeping.last_heartbeat = utcnow() - timedelta(seconds=health.SCHEDULER_STALE_SECONDS + 5)
    status, body = _ready(client)
    assert status == 503
    assert body["checks"]["scheduler"]["ok"] is False


def test_not_ready_when_a_deadline_is_overdue_beyond_the_bound(
    client: FlaskClient, world: Any, sweeping: FakeSweeper
) -> None:
    visit = make_visit(world.zone, "assigned", world.doctor)
    due = utcnow() - timedelta(seconds=health.OVERDUE_DEADLINE_BOUND_SECONDS - 10)
    deadlines.arm(circle_id=visit.circle_id, visit_id=visit.id, doctor_id=world.doctor.id,
                  kind="arrival", due_at=due, now=due - timedelta(minutes=30))
    db.session.commit()
    status, body = _ready(client)
    assert status == 200, body  # overdue, but within the bound
    assert 19 < body["checks"]["deadlines"]["oldest_overdue_deadline_seconds"] < 40

    row = deadlines.current(visit.id, "arrival")
    assert row is not None
    row.due_at = utcnow() - timedelta(seconds=health.OVERDUE_DEADLINE_BOUND_SECONDS + 10)
    db.session.commit()
    status, body = _ready(client)
    assert status == 503
    assert body["checks"]["deadlines"]["ok"] is False
    assert body["checks"]["deadlines"]["oldest_overdue_deadline_seconds"] > 39


def test_not_ready_when_a_message_waits_beyond_the_bound(
    client: FlaskClient, world: Any, sweeping: FakeSweeper
) -> None:
    then = utcnow() - timedelta(seconds=health.PENDING_OUTBOX_BOUND_SECONDS + 30)
    outbox.add(circle_id=world.circle.id, purpose="test", recipient_type="user",
               recipient_id=world.coordinator.id, channel="webhook",
               address="http://127.0.0.1:9/x", subject="s", body="b",
               payload={"type": "test"}, now=then)
    db.session.commit()
    status, body = _ready(client)
    assert status == 503
    assert body["checks"]["outbox"]["ok"] is False
    assert body["checks"]["outbox"]["oldest_pending_outbox_seconds"] >= 150


@pytest.fixture
def broker_app(settings: Settings) -> Iterator[APIFlask]:
    """An application with a broker: the scheduler is another process, seen through Redis."""
    application = create_app(settings.with_(broker_url=BROKER_URL))
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def heartbeat_store(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    client.delete(health.HEARTBEAT_KEY, health.AUDIT_KEY)
    yield client
    client.delete(health.HEARTBEAT_KEY, health.AUDIT_KEY)
    client.close()


def test_with_a_broker_the_scheduler_heartbeat_comes_from_redis(
    broker_app: APIFlask, heartbeat_store: redis.Redis, db: Any
) -> None:
    client = broker_app.test_client()
    status, body = _ready(client)
    assert status == 503
    assert body["checks"]["scheduler"]["mode"] == "process"
    assert body["checks"]["scheduler"]["last_heartbeat"] is None

    heartbeat_store.set(health.HEARTBEAT_KEY, utcnow().isoformat())
    heartbeat_store.set(health.AUDIT_KEY, '{"late_deadline_ids": []}')
    status, body = _ready(client)
    assert status == 200, body
    assert body["checks"]["broker"] == {"ok": True}
    assert body["checks"]["scheduler"]["ok"] is True
    assert body["checks"]["scheduler"]["audit"] == {"late_deadline_ids": []}


def test_not_ready_when_the_database_is_down(settings: Settings) -> None:
    down = create_app(settings.with_(database_url="postgresql+psycopg://postgres@127.0.0.1:1/x"))
    status, body = _ready(down.test_client())
    assert status == 503
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["deadlines"] == {"ok": False, "checked": False}
