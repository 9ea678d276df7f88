"""The ``oncall`` command line.

A Flask command group, so Flask's and Flask-Migrate's commands work too
(``oncall db migrate -m "..."``, ``oncall shell``, ``oncall routes``).

Processes:

* ``oncall serve [--demo]``: everything in one process (SQLite by default, in-process
  scheduler, waitress), for a first try or a small circle.
* ``oncall migrate`` / ``oncall web`` / ``oncall worker`` / ``oncall scheduler``: the
  production processes (PostgreSQL, Redis, gunicorn, Celery, APScheduler).

Setup: ``oncall bootstrap``, ``oncall demo``, ``oncall user create``,
``oncall telephony-secret``, ``oncall webhook-secret``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, ScriptInfo, pass_script_info
from sqlalchemy import inspect, select

from config.settings import Settings, SettingsError, from_env
from oncall.accounts.models import ROLES
from oncall.core.clock import utcnow
from oncall.errors import DomainError

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
#: Queues a worker consumes, most urgent first.
WORKER_QUEUES = "critical,default"
SERVE_THREADS = 8


def configure_logging(level: str) -> None:
    """Send log records of ``level`` and above to standard error, once per process."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # One line per job run, every second in embedded mode: only in DEBUG.
        logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)


def _settings() -> Settings:
    try:
        return from_env()
    except SettingsError as exc:
        raise click.ClickException(f"Configuration error: {exc}") from None


def _create_app() -> Flask:
    from oncall import create_app

    try:
        return create_app()
    except SettingsError as exc:
        raise click.ClickException(f"Configuration error: {exc}") from None


def _fail(error: DomainError) -> click.ClickException:
    lines = [error.message]
    lines += [f"  {name}: {'; '.join(reasons)}" for name, reasons in error.fields.items()]
    return click.ClickException("\n".join(lines))


cli = FlaskGroup(
    name="oncall",
    create_app=_create_app,
    load_dotenv=False,
    set_debug_flag=False,
    help="On-call coordination for GP circles: calls, home visits, doctor safety.",
)


# --------------------------------------------------------------------------- database


@contextmanager
def _keep_logging() -> Iterator[None]:
    """Undo the logging configuration that Alembic's environment applies."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def upgrade_database() -> None:
    """Apply every migration up to the head; fail if a table of the models is missing."""
    import flask_migrate

    from oncall.extensions import db

    with _keep_logging():
        flask_migrate.upgrade()
    present = set(inspect(db.engine).get_table_names())
    missing = sorted(name for name in db.metadata.tables if name not in present)
    if missing:
        raise click.ClickException(
            "The database lacks tables after applying the migrations: "
            + ", ".join(missing)
            + ". The migrations do not match the models: generate one with "
            "'oncall db migrate -m \"...\"', read it, then run 'oncall migrate'."
        )


@cli.command("migrate")
def migrate_command() -> None:
    """Apply the database migrations up to the latest one."""
    upgrade_database()
    click.echo("Database schema up to date.")


# --------------------------------------------------------------------------- setup


@cli.command("bootstrap")
@click.option("--circle", "circle_name", required=True, help="Name of the new circle.")
@click.option("--admin-email", required=True, help="Login of the circle's first admin.")
@click.option(
    "--admin-password",
    required=True,
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Password of the first admin (asked for when not given).",
)
@click.option("--admin-name", default=None, help="Display name of the first admin.")
@click.option("--timezone", default=None, help="IANA time zone (default ONCALL_DEFAULT_TIMEZONE).")
@click.option("--country", default=None, help="Country code (default ONCALL_DEFAULT_COUNTRY).")
def bootstrap_command(
    circle_name: str,
    admin_email: str,
    admin_password: str,
    admin_name: str | None,
    timezone: str | None,
    country: str | None,
) -> None:
    """Create a circle, its default escalation policies and its first admin."""
    from oncall.circles.services import create_circle

    try:
        circle, admin = create_circle(
            circle_name,
            admin_email,
            admin_password,
            utcnow(),
            timezone=timezone,
            country=country,
            admin_name=admin_name,
        )
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(
        f"Circle {circle.name!r} created (id {circle.id}, time zone {circle.timezone}); "
        f"its admin {admin.email} can now log in."
    )


def _print_demo_logins(password: str) -> None:
    from oncall.demo import DEMO_CHECKIN_CODE, DEMO_DURESS_CODE, demo_logins

    click.echo(f"Demo logins (password for all: {password}):")
    for role, email in demo_logins():
        click.echo(f"  {role:<12} {email}")
    click.echo(
        f"Doctors' check-in code: {DEMO_CHECKIN_CODE}; duress code: {DEMO_DURESS_CODE} "
        "(it answers like the check-in code and silently alerts the coordinator and police)."
    )


@cli.command("demo")
@click.option("--force", is_flag=True, help="Delete the demo circle first and build it again.")
def demo_command(force: bool) -> None:
    """Create the demonstration circle (does nothing if it exists, unless --force)."""
    from oncall.demo import DEMO_CIRCLE, DEMO_PASSWORD, load_demo

    try:
        summary = load_demo(utcnow(), force=force)
    except DomainError as exc:
        raise _fail(exc) from None
    if summary is None:
        click.echo(
            f"The circle {DEMO_CIRCLE!r} already exists; nothing changed (--force rebuilds it)."
        )
    else:
        counts = ", ".join(f"{n} {what}" for what, n in summary.counts.items())
        click.echo(f"Circle {DEMO_CIRCLE!r} created: {counts}.")
    _print_demo_logins(DEMO_PASSWORD)


@cli.group("user")
def user_group() -> None:
    """Manage users from the command line."""


@user_group.command("create")
@click.option("--circle", "circle_name", required=True, help="Name of the user's circle.")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--phone", default=None, help="Phone number (national or +32...).")
@click.option("--password", required=True, prompt=True, hide_input=True, confirmation_prompt=True)
def user_create_command(
    circle_name: str, email: str, name: str, role: str, phone: str | None, password: str
) -> None:
    """Create a user in a circle, on behalf of the circle's first active admin."""
    from oncall.accounts.models import User
    from oncall.accounts.services import create_user
    from oncall.circles.models import Circle
    from oncall.extensions import db

    circle = db.session.scalars(select(Circle).where(Circle.name == circle_name)).first()
    if circle is None:
        raise click.ClickException(f"No circle named {circle_name!r}.")
    admin = db.session.scalars(
        select(User)
        .where(User.circle_id == circle.id, User.role == "admin", User.active.is_(True))
        .order_by(User.id)
    ).first()
    if admin is None:
        raise click.ClickException(f"The circle {circle_name!r} has no active admin.")
    data = {"email": email, "name": name, "role": role, "password": password}
    if phone is not None:
        data["phone"] = phone
    try:
        user = create_user(admin, data, utcnow())
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(
        f"User {user.email} ({user.role}) created in {circle_name!r} (id {user.id}), "
        f"recorded as added by the admin {admin.email}."
    )


def _circle_for_secret(circle_name: str, used_by: str) -> Any:
    """The named circle, with a warning when the secret key (and so the secret) is random."""
    from oncall.circles.models import Circle
    from oncall.extensions import db

    circle = db.session.scalars(select(Circle).where(Circle.name == circle_name)).first()
    if circle is None:
        raise click.ClickException(f"No circle named {circle_name!r}.")
    if not os.environ.get("ONCALL_SECRET_KEY"):
        click.echo(
            "Warning: ONCALL_SECRET_KEY is not set, so this secret changes at every "
            f"restart. Set ONCALL_SECRET_KEY before configuring {used_by}.",
            err=True,
        )
    return circle


@cli.command("telephony-secret")
@click.option("--circle", "circle_name", required=True, help="Name of the circle.")
def telephony_secret_command(circle_name: str) -> None:
    """Print the secret the telephone system signs its webhook calls with."""
    from oncall.calls.telephony import circle_secret

    circle = _circle_for_secret(circle_name, "the telephone system")
    click.echo(f"Circle id {circle.id} (the X-Oncall-Circle header); its secret:", err=True)
    click.echo(circle_secret(circle, current_app.config["SECRET_KEY"]))


@cli.command("webhook-secret")
@click.option("--circle", "circle_name", required=True, help="Name of the circle.")
def webhook_secret_command(circle_name: str) -> None:
    """Print the secret the circle's outgoing webhooks are signed with (for receivers)."""
    from oncall.notify.signing import webhook_secret

    circle = _circle_for_secret(circle_name, "a receiver")
    click.echo(
        f"Circle id {circle.id}; webhooks carry X-Oncall-Timestamp and X-Oncall-Signature "
        "(sha256=HMAC-SHA256(secret, timestamp + '.' + body)); the secret:",
        err=True,
    )
    click.echo(webhook_secret(current_app.config["SECRET_KEY"], circle.id))


# --------------------------------------------------------------------------- processes


@cli.command("serve", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--demo", is_flag=True, help="Load the demonstration circle first.")
@pass_script_info
def serve_command(info: ScriptInfo, host: str, port: int, demo: bool) -> None:
    """Run everything in one process: migrations, scheduler and web server."""
    import waitress

    app = info.load_app()
    settings: Settings = app.config["ONCALL"]
    with app.app_context():
        upgrade_database()
        if demo:
            from oncall.demo import load_demo

            try:
                summary = load_demo(utcnow())
            except DomainError as exc:
                raise _fail(exc) from None
            logger.info("demo data %s", "loaded" if summary else "already present")
    scheduler = None
    if settings.embedded:
        from workers.scheduler import start_embedded_scheduler

        scheduler = start_embedded_scheduler(app)
    else:
        logger.warning(
            "ONCALL_BROKER_URL is set: run 'oncall worker' and 'oncall scheduler' beside this"
        )
    shown_host = "localhost" if host in {"127.0.0.1", "0.0.0.0", "::"} else host  # noqa: S104
    click.echo(f"oncall is running on http://{shown_host}:{port}/  (Ctrl+C to stop)")
    click.echo(f"API description: http://{shown_host}:{port}/api/v1/openapi.json")
    if demo:
        from oncall.demo import DEMO_PASSWORD

        _print_demo_logins(DEMO_PASSWORD)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        waitress.serve(app, host=host, port=port, threads=SERVE_THREADS, ident="oncall")
    except KeyboardInterrupt:
        pass
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        click.echo("oncall stopped.")


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


_PASS_THROUGH: dict[str, Any] = {
    "ignore_unknown_options": True,
    "allow_extra_args": True,
    "help_option_names": [],
}


@cli.command("worker", with_appcontext=False, context_settings=_PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(celery_args: Sequence[str]) -> None:
    """Run a Celery worker on the queues critical and default (extra arguments go to Celery)."""
    settings = _settings()
    if not settings.broker_url:
        raise click.ClickException(
            "A worker needs ONCALL_BROKER_URL (for example redis://127.0.0.1:6379/0). "
            "Without a broker, 'oncall serve' does the work in-process."
        )
    from workers.celery_app import celery_app

    argv = ["worker", "--queues", WORKER_QUEUES, "--loglevel", settings.log_level, *celery_args]
    # Celery's own entry point, called so that its exit status is kept: a worker
    # that dies (for example when the broker vanishes under it) must exit non-zero,
    # or a supervisor that restarts failed processes would leave it down.
    from celery.bin.celery import celery as celery_main

    celery_main.params[0].default = celery_app
    try:
        code = celery_main.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as stop:
        code = stop.exit_code
    finally:
        celery_main.params[0].default = None
    if isinstance(code, int) and code != 0:
        raise SystemExit(code)


@cli.command("scheduler", with_appcontext=False)
@pass_script_info
def scheduler_command(info: ScriptInfo) -> None:
    """Run the scheduler process (one active per deployment)."""
    from workers.scheduler import run_scheduler

    run_scheduler(info.load_app())


@cli.command("web", with_appcontext=False, context_settings=_PASS_THROUGH)
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def web_command(gunicorn_args: Sequence[str]) -> None:
    """Run the web server, gunicorn with config/gunicorn.py (extra arguments go to gunicorn)."""
    _settings()  # a configuration error is reported here, not once per gunicorn worker
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:config.gunicorn",
        *gunicorn_args,
        "oncall.wsgi:app",
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter, fixed arguments


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``oncall`` command: configure logging once, then run the command."""
    try:
        level = from_env().log_level
    except SettingsError:
        level = "INFO"  # the command itself reports the configuration error
    configure_logging(level)
    cli.main(args=list(argv) if argv is not None else None, prog_name="oncall")


if __name__ == "__main__":
    main()
