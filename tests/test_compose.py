"""The production compose file is valid and runs only commands that exist."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from oncall.cli import cli

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DUMMY_ENV = {
    "ONCALL_SECRET_KEY": "dummy-secret-key-for-config-check-only-0123456789",
    "POSTGRES_PASSWORD": "dummy-password",
}
WAITING_ON_MIGRATE = ("web", "worker", "scheduler")


def _compose_binary() -> str:
    found = shutil.which("docker-compose") or (
        "/usr/bin/docker-compose" if Path("/usr/bin/docker-compose").exists() else None
    )
    assert found, "docker-compose is not installed (scripts/test.sh installs it)"
    return found


def _compose_config(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in DUMMY_ENV}
    env.update(extra_env)
    return subprocess.run(
        [
            _compose_binary(),
            "--file",
            str(COMPOSE_FILE),
            "--project-directory",
            str(ROOT),
            "config",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = _compose_config(DUMMY_ENV)
    assert result.returncode == 0, result.stderr
    loaded = yaml.safe_load(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def test_compose_config_is_valid_and_has_every_service(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {
        "postgres", "redis", "migrate", "web", "worker", "scheduler"
    }  # fmt: skip


def test_secret_key_is_required_from_the_environment() -> None:
    result = _compose_config({"POSTGRES_PASSWORD": "dummy-password"})
    assert result.returncode != 0
    assert "ONCALL_SECRET_KEY" in result.stderr
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert DUMMY_ENV["ONCALL_SECRET_KEY"] not in text


def test_every_oncall_command_is_a_registered_command(config: dict[str, Any]) -> None:
    registered = set(cli.commands)
    seen = 0
    for name, service in config["services"].items():
        command = _command(service)
        if command and command[0] == "oncall":
            seen += 1
            assert len(command) > 1, name
            assert command[1] in registered, f"{name}: 'oncall {command[1]}' is not a command"
    assert seen == 4


def test_application_services_share_one_image_and_production_settings(
    config: dict[str, Any],
) -> None:
    services = config["services"]
    app_services = ["migrate", *WAITING_ON_MIGRATE]
    images = {services[name].get("image") for name in app_services}
    assert len(images) == 1
    assert None not in images
    for name in app_services:
        env = services[name]["environment"]
        assert env["ONCALL_PROFILE"] == "production"
        assert env["ONCALL_SECRET_KEY"] == DUMMY_ENV["ONCALL_SECRET_KEY"]
        assert env["ONCALL_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["ONCALL_BROKER_URL"].startswith("redis://")


def test_migrate_runs_once_and_everything_waits_for_it(config: dict[str, Any]) -> None:
    services = config["services"]
    assert _command(services["migrate"]) == ["oncall", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart", "no") == "no"
    for name in WAITING_ON_MIGRATE:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_backing_services_are_durable_and_checked(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["postgres"]["image"].startswith("postgres:15")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["image"].startswith("redis:7")
    redis_command = " ".join(_command(services["redis"]))
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    for name in ("postgres", "redis"):
        assert services[name]["volumes"], name
        assert services[name]["healthcheck"]["test"], name
    assert "/health" in " ".join(services["web"]["healthcheck"]["test"])


def test_workers_can_be_scaled(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")
