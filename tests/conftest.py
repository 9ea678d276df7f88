"""Test fixtures: a PostgreSQL database created for the run, Redis, app and clients.

``ONCALL_TEST_PG`` names the server (default ``postgresql://postgres@127.0.0.1:5432``);
``ONCALL_TEST_REDIS`` the Redis URL (default ``redis://127.0.0.1:6379/15``). Neither
is optional: if one cannot be reached the run fails, it does not skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import text

from config.settings import Settings
from oncall import create_app
from oncall.extensions import db as _db
from tests import factories as f

PG_SERVER = os.environ.get("ONCALL_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("ONCALL_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _sqlalchemy_url(server: str, database: str) -> str:
    return server.replace("postgresql://", "postgresql+psycopg://", 1) + f"/{database}"


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL); dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _sqlalchemy_url(PG_SERVER, name)
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test run; dropped afterwards."""
    with fresh_database("oncall_test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    client.ping()  # fails the run if Redis is down
    return REDIS_URL


@pytest.fixture(scope="session")
def settings(
    pg_database: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        profile="test",
        secret_key="test-secret-key-" + "x" * 32,
        database_url=pg_database,
        redis_url=redis_url,
        instance_path=str(tmp_path_factory.mktemp("instance")),
    ).validate()


@pytest.fixture(scope="session")
def app(settings: Settings) -> Iterator[APIFlask]:
    application = create_app(settings)
    with application.app_context():
        _db.create_all()
    yield application
    with application.app_context():
        _db.engine.dispose()


@pytest.fixture
def db(app: APIFlask) -> Iterator[Any]:
    """The database session inside an app context; every table emptied afterwards."""
    ctx = app.app_context()
    ctx.push()
    try:
        yield _db
    finally:
        _db.session.remove()
        tables = ", ".join(f'"{t.name}"' for t in _db.metadata.sorted_tables)
        with _db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        ctx.pop()


@pytest.fixture(autouse=True)
def _own_rate_limit_keys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test counts login attempts under its own Redis keys."""
    if "app" in request.fixturenames:
        app = request.getfixturevalue("app")
        monkeypatch.setitem(app.config, "RATELIMIT_PREFIX", f"oncall:rl:test:{uuid.uuid4().hex}:")


@pytest.fixture
def client(app: APIFlask, db: Any) -> FlaskClient:
    return app.test_client()


@dataclass
class World:
    """A circle with one user of each role, a zone, and bearer headers per role."""

    circle: Any
    zone: Any
    admin: Any
    dispatcher: Any
    doctor: Any
    coordinator: Any
    headers: dict[str, dict[str, str]]


ROLES = ("admin", "dispatcher", "doctor", "coordinator")


def _make_world(circle_name: str, zone_name: str) -> World:
    circle = f.make_circle(circle_name)
    zone = f.make_zone(circle, zone_name)
    users = {role: f.make_user(circle, role) for role in ROLES}
    return World(
        circle=circle,
        zone=zone,
        headers={role: f.auth(user) for role, user in users.items()},
        **users,
    )


@pytest.fixture
def world(db: Any) -> World:
    return _make_world("Cercle de test", "Nord")


@pytest.fixture
def other_world(db: Any) -> World:
    """A second circle, to prove nothing of one circle is visible to the other."""
    return _make_world("Autre cercle", "Sud")
