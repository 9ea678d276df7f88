from __future__ import annotations

import pytest

from config.settings import VARIABLES, SettingsError, from_env


def test_embedded_default_needs_nothing(tmp_path):
    settings = from_env({"ONCALL_INSTANCE_PATH": str(tmp_path)})
    assert settings.profile == "embedded"
    assert settings.embedded
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'oncall.sqlite3'}"
    assert len(settings.secret_key) >= 32  # random per process when none is configured


def test_production_refuses_without_secret_and_database():
    with pytest.raises(SettingsError) as err:
        from_env({"ONCALL_PROFILE": "production"})
    assert "ONCALL_SECRET_KEY" in str(err.value)
    assert "ONCALL_DATABASE_URL" in str(err.value)


def test_production_refuses_a_short_secret():
    with pytest.raises(SettingsError, match="at least 32"):
        from_env(
            {
                "ONCALL_PROFILE": "production",
                "ONCALL_SECRET_KEY": "short",
                "ONCALL_DATABASE_URL": "postgresql+psycopg://db/oncall",
            }
        )


def test_production_starts_with_both_and_secures_cookies():
    settings = from_env(
        {
            "ONCALL_PROFILE": "production",
            "ONCALL_SECRET_KEY": "s" * 40,
            "ONCALL_DATABASE_URL": "postgresql+psycopg://db/oncall",
            "ONCALL_BROKER_URL": "redis://redis:6379/0",
        }
    )
    assert settings.secure_cookies is True
    assert not settings.embedded


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ONCALL_TOKEN_TTL_DAYS", "ninety", "whole number"),
        ("ONCALL_SECURE_COOKIES", "perhaps", "true or false"),
        ("ONCALL_SWEEP_INTERVAL_SECONDS", "fast", "number"),
        ("ONCALL_DEFAULT_TIMEZONE", "Europe/Nowhere", "time zone"),
        ("ONCALL_DEFAULT_COUNTRY", "BEL", "two-letter"),
        ("ONCALL_PROFILE", "staging", "one of"),
    ],
)
def test_malformed_values_name_the_variable(variable, value, message):
    with pytest.raises(SettingsError, match=message):
        from_env({variable: value})


def test_typed_values_are_parsed():
    settings = from_env(
        {
            "ONCALL_TOKEN_TTL_DAYS": "30",
            "ONCALL_SECURE_COOKIES": "yes",
            "ONCALL_SWEEP_INTERVAL_SECONDS": "0.5",
        }
    )
    assert settings.token_ttl_days == 30
    assert settings.secure_cookies is True
    assert settings.sweep_interval_seconds == 0.5


def test_every_variable_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [v for v in VARIABLES if v not in readme]
    assert not missing, f"README lacks {missing}"
