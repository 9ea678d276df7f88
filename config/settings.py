"""Typed settings read from ``ONCALL_*`` environment variables.

Three profiles:

* ``embedded`` (the default): SQLite in the instance folder, no broker, the
  scheduler runs in-process. Nothing else to install.
* ``test``: the test suite's profile; the database URL comes from the tests.
* ``production``: refuses to start without ``ONCALL_SECRET_KEY`` and
  ``ONCALL_DATABASE_URL``.

Every variable is listed in :data:`VARIABLES` and documented in the README.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROFILES = ("embedded", "test", "production")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"ONCALL_{name.upper()} must be true or false, not {raw!r}")


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"ONCALL_{name.upper()} must be a whole number, not {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """The service's whole configuration; immutable once read."""

    profile: str = "embedded"
    #: Signs sessions and derives per-circle telephony secrets. Required in production.
    secret_key: str = ""
    #: SQLAlchemy URL. Empty means SQLite in the instance folder.
    database_url: str = ""
    #: Celery broker URL. Empty means embedded mode: no Celery, in-process scheduler.
    broker_url: str = ""
    #: Redis URL for rate limits and the live stream fan-out. Empty means in-memory.
    redis_url: str = ""
    #: Folder for the embedded SQLite database and other local state.
    instance_path: str = ""
    #: Default time zone of a new circle.
    default_timezone: str = "Europe/Brussels"
    #: Default country (ISO 3166 alpha-2) for reading national phone numbers.
    default_country: str = "BE"
    #: Lifetime of a bearer token, in days.
    token_ttl_days: int = 90
    #: Login attempts allowed per email and client address in one window.
    login_rate_limit: int = 10
    #: Length of the login rate-limit window, in seconds.
    login_rate_window_seconds: int = 300
    #: How far a signed telephony event's timestamp may be from now, in seconds.
    telephony_max_skew_seconds: int = 300
    #: Sweep interval of the in-process scheduler in embedded mode, in seconds.
    sweep_interval_seconds: float = 1.0
    #: Sweep interval of the scheduler process (deadlines, steps, outbox), in seconds.
    scheduler_sweep_seconds: float = 2.0
    #: Rows the engine claims per transaction when it sweeps.
    sweep_batch_size: int = 200
    #: SMTP server for email notifications. Empty: no email channel.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    #: Use STARTTLS after connecting (port 587); ``smtp_ssl`` for implicit TLS (465).
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    #: Sender address of notification emails.
    smtp_from: str = "oncall@localhost"
    #: SMS gateway endpoint (HTTP POST, JSON). Empty: no SMS channel.
    sms_gateway_url: str = ""
    #: Bearer token sent to the SMS gateway.
    sms_gateway_token: str = ""
    #: Sender name or number shown on SMS.
    sms_sender: str = "ONCALL"
    #: Time allowed for one delivery (SMTP session, webhook or SMS request), in seconds.
    delivery_timeout_seconds: float = 5.0
    #: Longest wait between two delivery attempts of one message, in seconds.
    outbox_max_backoff_seconds: int = 15
    #: After this long without success a message is marked failed, in seconds.
    outbox_give_up_seconds: int = 3600
    #: Log level of the service's own loggers.
    log_level: str = "INFO"
    #: Mark session cookies Secure (behind HTTPS). On by default in production.
    secure_cookies: bool = False
    #: Extra settings not read from the environment (tests use it).
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the scheduler runs in-process."""
        return not self.broker_url

    def resolved_database_url(self) -> str:
        """The database URL, with the embedded SQLite default filled in."""
        if self.database_url:
            return self.database_url
        folder = Path(self.instance_path or Path.cwd() / "instance")
        return f"sqlite:///{folder / 'oncall.sqlite3'}"

    def validate(self) -> Settings:
        """Check the combination of values; raise :class:`SettingsError` if unusable."""
        if self.profile not in PROFILES:
            raise SettingsError(f"ONCALL_PROFILE must be one of {', '.join(PROFILES)}")
        if self.profile == "production":
            missing = [
                name
                for name, value in (
                    ("ONCALL_SECRET_KEY", self.secret_key),
                    ("ONCALL_DATABASE_URL", self.database_url),
                )
                if not value
            ]
            if missing:
                raise SettingsError(
                    "production profile refuses to start without " + " and ".join(missing)
                )
            if len(self.secret_key) < 32:
                raise SettingsError("ONCALL_SECRET_KEY must be at least 32 characters")
        try:
            ZoneInfo(self.default_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"ONCALL_DEFAULT_TIMEZONE {self.default_timezone!r} is not a known time zone"
            ) from None
        if len(self.default_country) != 2:
            raise SettingsError("ONCALL_DEFAULT_COUNTRY must be a two-letter country code")
        return self

    def with_(self, **changes: Any) -> Settings:
        """A copy with some values changed (the tests use it)."""
        return replace(self, **changes)


#: Every environment variable the service reads, for the README's table.
VARIABLES = tuple(f"ONCALL_{f.name.upper()}" for f in fields(Settings) if f.name != "extra")


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``ONCALL_*`` variables, parse their types and validate them."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "extra":
            continue
        raw = env.get(f"ONCALL_{f.name.upper()}")
        if raw is None:
            continue
        if f.type == "bool":
            values[f.name] = _bool(f.name, raw)
        elif f.type == "int":
            values[f.name] = _int(f.name, raw)
        elif f.type == "float":
            try:
                values[f.name] = float(raw)
            except ValueError:
                raise SettingsError(f"ONCALL_{f.name.upper()} must be a number") from None
        else:
            values[f.name] = raw
    settings = Settings(**values)
    if settings.profile == "production" and "secure_cookies" not in values:
        settings = settings.with_(secure_cookies=True)
    if settings.profile != "production" and not settings.secret_key:
        # Embedded and test runs get a random key per process; sessions do not
        # survive a restart, which is the honest behaviour without a configured key.
        settings = settings.with_(secret_key=secrets.token_urlsafe(48))
    return settings.validate()
