"""Migrations build the schema from nothing, and the result matches the models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect

from config.settings import Settings
from oncall import create_app
from oncall.extensions import db
from tests.conftest import fresh_database


@pytest.fixture
def empty_database() -> Iterator[str]:
    with fresh_database("oncall_migr") as url:
        yield url


def _app(url: str, tmp_path):
    return create_app(
        Settings(
            profile="test",
            secret_key="k" * 40,
            database_url=url,
            instance_path=str(tmp_path),
        )
    )


def test_upgrade_from_empty_matches_models(empty_database: str, tmp_path) -> None:
    app = _app(empty_database, tmp_path)
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": False}
            )
            diff = compare_metadata(context, db.metadata)
        db.engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_downgrade_to_base_and_up_again(empty_database: str, tmp_path) -> None:
    app = _app(empty_database, tmp_path)
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        engine = create_engine(empty_database)
        tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
        engine.dispose()
        assert tables == set()
        upgrade()
        assert "visits" in inspect(db.engine).get_table_names()
        db.engine.dispose()
