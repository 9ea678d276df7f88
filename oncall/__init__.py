"""oncall: on-call coordination backend for GP circles."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from apiflask import APIFlask

from config.settings import Settings, from_env

__all__ = ["create_app"]

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, **overrides: Any) -> APIFlask:
    """Build the Flask application. Connects to nothing until a request needs it."""
    settings = (
        (settings or from_env()).with_(**overrides) if overrides else (settings or from_env())
    )
    instance = Path(settings.instance_path).resolve() if settings.instance_path else None
    app = APIFlask(
        __name__,
        title="oncall",
        version="1",
        spec_path=f"{API_PREFIX}/openapi.json",
        docs_path=None,
        instance_path=str(instance) if instance else None,
    )
    if not settings.instance_path:
        settings = settings.with_(instance_path=app.instance_path)
    Path(settings.instance_path).mkdir(parents=True, exist_ok=True)

    app.config.update(
        ONCALL=settings,
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.resolved_database_url(),
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        MAX_CONTENT_LENGTH=1024 * 1024,
        JSON_SORT_KEYS=False,
        VALIDATION_ERROR_STATUS_CODE=422,
        AUTH_ERROR_STATUS_CODE=401,
        INFO={"description": "On-call coordination for GP circles: calls, visits, safety."},
        TESTING=settings.profile == "test",
    )
    app.config.update(settings.extra)
    logging.getLogger("oncall").setLevel(settings.log_level)

    from oncall import errors, models  # noqa: F401  (every table registered)
    from oncall.extensions import db, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent / "migrations"))
    _enable_sqlite_foreign_keys(app)
    errors.register(app)

    from oncall.core import dispatch

    dispatch.init_app(app)

    from oncall.alerts import receipts

    receipts.register()

    from oncall.api import register_api

    register_api(app)
    return app


def _engine_options(settings: Settings) -> dict[str, Any]:
    url = settings.resolved_database_url()
    if url.startswith("sqlite"):
        return {"connect_args": {"check_same_thread": False, "timeout": 30}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10, "pool_recycle": 1800}


def _enable_sqlite_foreign_keys(app: APIFlask) -> None:
    from sqlalchemy import event

    from oncall.extensions import db

    with app.app_context():
        engine = db.engine
        if engine.dialect.name != "sqlite":
            return

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
