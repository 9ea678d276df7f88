"""The command line: bootstrap, demo data, and the one-process server on SQLite."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from apiflask import APIFlask
from click.testing import Result
from sqlalchemy import func, select

from config.settings import VARIABLES
from oncall.accounts.models import User
from oncall.accounts.passwords import verify_password
from oncall.accounts.services import issue_token
from oncall.calls.models import OUTCOMES, Call, Caller
from oncall.calls.services import record_telephony_event
from oncall.circles.models import DEFAULT_POLICIES, Circle, EscalationPolicy, PoliceContact, Zone
from oncall.cli import cli
from oncall.core.clock import utcnow
from oncall.core.timeline import TimelineEvent
from oncall.demo import DEMO_CIRCLE, DEMO_PASSWORD, demo_logins, demo_rota, load_demo
from oncall.errors import Conflict
from oncall.rota.models import Shift
from oncall.visits.models import Visit

ROOT = Path(__file__).resolve().parent.parent
BRUSSELS = ZoneInfo("Europe/Brussels")
ADMIN_PASSWORD = "a long admin password"


def invoke(app: APIFlask, *args: str) -> Result:
    return app.test_cli_runner().invoke(cli, list(args))


def count(db: Any, model: Any, *where: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_creates_circle_policies_and_admin(app: APIFlask, db: Any) -> None:
    result = invoke(
        app,
        "bootstrap",
        "--circle", "Cercle des Essais",
        "--admin-email", " Admin@Essais.Example.org ",
        "--admin-password", ADMIN_PASSWORD,
        "--timezone", "Europe/Paris",
        "--country", "fr",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "admin@essais.example.org" in result.output
    circle = db.session.scalars(select(Circle).where(Circle.name == "Cercle des Essais")).one()
    assert (circle.timezone, circle.country) == ("Europe/Paris", "FR")
    admin = db.session.scalars(select(User).where(User.circle_id == circle.id)).one()
    assert (admin.email, admin.role, admin.active) == ("admin@essais.example.org", "admin", True)
    assert verify_password(admin.password_hash, ADMIN_PASSWORD)
    policies = {
        p.alert_kind: p.steps
        for p in db.session.scalars(
            select(EscalationPolicy).where(EscalationPolicy.circle_id == circle.id)
        )
    }
    assert policies == DEFAULT_POLICIES


def test_bootstrap_uses_the_default_time_zone(app: APIFlask, db: Any) -> None:
    result = invoke(
        app, "bootstrap", "--circle", "Cercle B", "--admin-email", "b@example.org",
        "--admin-password", ADMIN_PASSWORD,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    circle = db.session.scalars(select(Circle).where(Circle.name == "Cercle B")).one()
    assert (circle.timezone, circle.country) == ("Europe/Brussels", "BE")


def test_bootstrap_refuses_a_taken_circle_name_or_email(app: APIFlask, db: Any) -> None:
    first = invoke(
        app, "bootstrap", "--circle", "Cercle A", "--admin-email", "a@example.org",
        "--admin-password", ADMIN_PASSWORD,
    )  # fmt: skip
    assert first.exit_code == 0, first.output

    same_name = invoke(
        app, "bootstrap", "--circle", "cercle a", "--admin-email", "other@example.org",
        "--admin-password", ADMIN_PASSWORD,
    )  # fmt: skip
    assert same_name.exit_code == 1
    assert "A circle with this name exists" in same_name.output

    same_email = invoke(
        app, "bootstrap", "--circle", "Cercle Z", "--admin-email", "A@example.org",
        "--admin-password", ADMIN_PASSWORD,
    )  # fmt: skip
    assert same_email.exit_code == 1
    assert "admin_email: This email is already used" in same_email.output

    assert count(db, Circle) == 1
    assert count(db, User) == 1
    assert count(db, EscalationPolicy) == len(DEFAULT_POLICIES)


def test_bootstrap_names_every_bad_value_and_writes_nothing(app: APIFlask, db: Any) -> None:
    result = invoke(
        app, "bootstrap", "--circle", "Cercle C", "--admin-email", "not-an-email",
        "--admin-password", "short", "--timezone", "Europe/Nowhere", "--country", "BEL",
    )  # fmt: skip
    assert result.exit_code == 1
    for name in ("admin_email", "admin_password", "timezone", "country"):
        assert name in result.output
    assert count(db, Circle) == 0
    assert count(db, User) == 0


def test_user_create_adds_a_user_to_a_circle(app: APIFlask, db: Any) -> None:
    invoke(
        app, "bootstrap", "--circle", "Cercle U", "--admin-email", "u@example.org",
        "--admin-password", ADMIN_PASSWORD,
    )  # fmt: skip
    args = [
        "user", "create", "--circle", "Cercle U", "--email", "Doc@Example.org",
        "--name", "Dr Essai", "--role", "doctor", "--phone", "0470 12 34 56",
        "--password", ADMIN_PASSWORD,
    ]  # fmt: skip
    result = invoke(app, *args)
    assert result.exit_code == 0, result.output
    assert "u@example.org" in result.output
    doctor = db.session.scalars(select(User).where(User.email == "doc@example.org")).one()
    admin = db.session.scalars(select(User).where(User.email == "u@example.org")).one()
    assert (doctor.role, doctor.phone) == ("doctor", "+32470123456")
    assert doctor.circle_id == admin.circle_id
    assert verify_password(doctor.password_hash, ADMIN_PASSWORD)
    created = db.session.scalars(
        select(TimelineEvent).where(TimelineEvent.kind == "user.created")
    ).one()
    assert (created.subject_id, created.actor_id) == (doctor.id, admin.id)

    again = invoke(app, *args)
    assert again.exit_code == 1
    assert "email: This email is already used" in again.output
    unknown = invoke(app, *(a if a != "Cercle U" else "Nowhere" for a in args))
    assert unknown.exit_code == 1
    assert "No circle named 'Nowhere'" in unknown.output
    assert count(db, User) == 2


def test_user_create_names_every_bad_value_and_writes_nothing(app: APIFlask, db: Any) -> None:
    invoke(
        app, "bootstrap", "--circle", "Cercle V", "--admin-email", "v@example.org",
        "--admin-password", ADMIN_PASSWORD,
    )  # fmt: skip
    result = invoke(
        app, "user", "create", "--circle", "Cercle V", "--email", "not-an-email",
        "--name", " ", "--role", "dispatcher", "--phone", "12", "--password", "short",
    )  # fmt: skip
    assert result.exit_code == 1
    for name in ("email:", "name:", "phone:", "password:"):
        assert name in result.output
    assert count(db, User) == 1
    assert count(db, TimelineEvent, TimelineEvent.kind == "user.created") == 0


# --------------------------------------------------------------------------- demo


def _assert_covered(shifts: list[Shift], zone_ids: list[int], start: datetime, hours: int) -> None:
    """Every zone has a doctor on duty at each hour on the hour from ``start``."""
    first = start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for h in range(hours + 1):
        at = first + timedelta(hours=h)
        for zone_id in zone_ids:
            on_duty = [s for s in shifts if s.zone_id == zone_id and s.starts_at <= at < s.ends_at]
            assert on_duty, f"nobody on duty in zone {zone_id} at {at.isoformat()}"


def _rows_of(db: Any, circle_id: int) -> dict[str, int]:
    """Rows of every table that has a circle_id column, for one circle."""
    return {
        t.name: db.session.scalar(
            select(func.count()).select_from(t).where(t.c.circle_id == circle_id)
        )
        for t in db.metadata.sorted_tables
        if "circle_id" in t.c
    }


def test_demo_creates_a_complete_circle(app: APIFlask, db: Any) -> None:
    started = utcnow()
    result = invoke(app, "demo")
    assert result.exit_code == 0, result.output
    for _role, email in demo_logins():
        assert email in result.output
    assert DEMO_PASSWORD in result.output

    circle = db.session.scalars(select(Circle).where(Circle.name == DEMO_CIRCLE)).one()
    assert (circle.timezone, circle.country) == ("Europe/Brussels", "BE")
    zones = list(db.session.scalars(select(Zone).where(Zone.circle_id == circle.id)))
    assert len(zones) == 3
    users = list(db.session.scalars(select(User).where(User.circle_id == circle.id)))
    roles = Counter(u.role for u in users)
    assert roles == {"doctor": 4, "dispatcher": 1, "coordinator": 1, "admin": 1}
    assert sorted(demo_logins()) == sorted((u.role, u.email) for u in users)
    for user in users:
        assert user.email.endswith("@demo.example.org")
        assert (user.phone or "").startswith("+32470")
        assert verify_password(user.password_hash, DEMO_PASSWORD)
    doctors = [u for u in users if u.role == "doctor"]
    assert all(d.vehicle_plate and d.vehicle_make and d.vehicle_colour for d in doctors)
    police = list(
        db.session.scalars(select(PoliceContact).where(PoliceContact.circle_id == circle.id))
    )
    assert [(p.zone_id, p.phone) for p in police] == [(None, "+3225000000")]
    assert count(db, EscalationPolicy, EscalationPolicy.circle_id == circle.id) == len(
        DEFAULT_POLICIES
    )

    shifts = list(db.session.scalars(select(Shift).where(Shift.circle_id == circle.id)))
    assert {s.doctor_id for s in shifts} == {d.id for d in doctors}
    _assert_covered(shifts, [z.id for z in zones], started, hours=7 * 24)

    calls = list(db.session.scalars(select(Call).where(Call.circle_id == circle.id)))
    assert len(calls) >= 10
    assert {c.outcome for c in calls} == set(OUTCOMES)
    assert all(c.caller_number and re.fullmatch(r"\+32\d{8,9}", c.caller_number) for c in calls)
    assert all(c.state == "ended" and c.created_at <= started for c in calls)
    callers = set(db.session.scalars(select(Caller.number).where(Caller.circle_id == circle.id)))
    assert callers == {c.caller_number for c in calls}
    assert len(callers) < len(calls)  # some callers call twice: the history shows them

    visits = list(db.session.scalars(select(Visit).where(Visit.circle_id == circle.id)))
    assert len(visits) == sum(1 for c in calls if c.outcome == "home_visit")
    assert Counter(v.status for v in visits) == {
        "completed": 2, "cancelled": 1, "on_site": 1, "assigned": 1,
    }  # fmt: skip
    for visit in visits:
        assert visit.doctor_id is not None
        assert any(
            s.zone_id == visit.zone_id
            and s.doctor_id == visit.doctor_id
            and s.starts_at <= visit.created_at < s.ends_at
            for s in shifts
        ), f"visit {visit.id} is not assigned to the doctor on duty"
        assert visit.created_at < started
        assert visit.arrive_by is not None
        if visit.status in ("on_site", "completed"):
            assert visit.checked_in_at is not None
            assert visit.created_at < visit.checked_in_at < started
        if visit.status == "completed":
            assert visit.checked_in_at < visit.checked_out_at < started
        if visit.status == "assigned":
            assert visit.arrive_by > started
    kinds = Counter(
        (e.subject_type, e.kind)
        for e in db.session.scalars(
            select(TimelineEvent).where(TimelineEvent.circle_id == circle.id)
        )
    )
    assert kinds[("call", "call.created")] == len(calls)
    assert kinds[("call", "call.outcome_set")] == len(calls)
    assert kinds[("visit", "visit.created")] == len(visits)
    assert kinds[("visit", "visit.assigned")] == len(visits)
    assert kinds[("visit", "visit.checked_in")] == 3
    assert kinds[("visit", "visit.checked_out")] == 2
    assert kinds[("visit", "visit.cancelled")] == 1
    assert kinds[("shift", "shift_created")] == len(shifts)
    assert kinds[("user", "user.created")] == len(users) - 1


def test_demo_is_idempotent_and_force_rebuilds(app: APIFlask, db: Any) -> None:
    assert invoke(app, "demo").exit_code == 0
    first_id = db.session.scalar(select(Circle.id).where(Circle.name == DEMO_CIRCLE))
    before = _rows_of(db, first_id)
    assert before["timeline_events"] > 0
    assert before["access_log"] > 0

    again = invoke(app, "demo")
    assert again.exit_code == 0, again.output
    assert "already exists" in again.output
    assert _rows_of(db, first_id) == before

    forced = invoke(app, "demo", "--force")
    assert forced.exit_code == 0, forced.output
    db.session.expire_all()
    new_id = db.session.scalar(select(Circle.id).where(Circle.name == DEMO_CIRCLE))
    assert new_id != first_id
    assert count(db, Circle) == 1
    assert set(_rows_of(db, first_id).values()) == {0}
    assert _rows_of(db, new_id) == before


def test_demo_force_deletes_only_the_demo_circle(app: APIFlask, db: Any) -> None:
    now = utcnow()
    summary = load_demo(now)
    assert summary is not None
    demo = db.session.get(Circle, summary.circle_id)
    dispatcher = db.session.scalars(
        select(User).where(User.circle_id == demo.id, User.role == "dispatcher")
    ).one()
    issue_token(dispatcher, "demo", now)
    record_telephony_event(
        demo, {"call_ref": "demo-ring-1", "event": "ringing", "caller_number": "02 800 00 09"}, now
    )
    demo_rows = _rows_of(db, demo.id)
    for table in ("api_tokens", "telephony_events", "timeline_events", "access_log"):
        assert demo_rows[table] > 0, table
    other = invoke(
        app, "bootstrap", "--circle", "Cercle voisin", "--admin-email", "voisin@example.org",
        "--admin-password", ADMIN_PASSWORD,
    )  # fmt: skip
    assert other.exit_code == 0, other.output
    other_id = db.session.scalar(select(Circle.id).where(Circle.name == "Cercle voisin"))
    other_rows = _rows_of(db, other_id)

    rebuilt = load_demo(utcnow(), force=True)
    assert rebuilt is not None
    assert set(_rows_of(db, summary.circle_id).values()) == {0}
    assert _rows_of(db, other_id) == other_rows
    assert count(db, Circle) == 2


def test_demo_that_fails_halfway_leaves_nothing(
    app: APIFlask, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise Conflict("Refused for the test.", code="refused")

    monkeypatch.setattr("oncall.demo.check_out", refuse)
    with pytest.raises(Conflict):
        load_demo(utcnow())
    db.session.expire_all()
    assert count(db, Circle) == 0
    assert all(count(db, t) == 0 for t in db.metadata.sorted_tables)


def test_demo_command_reports_a_refusal(
    app: APIFlask, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise Conflict("Refused for the test.", code="refused")

    monkeypatch.setattr("oncall.demo.cancel_visit", refuse)
    result = invoke(app, "demo")
    assert result.exit_code == 1
    assert "Refused for the test." in result.output
    assert count(db, Circle) == 0


@pytest.mark.parametrize(
    ("now", "change_night", "hours"),
    [
        # Friday before the last Sunday of March: clocks go forward at 02:00.
        (datetime(2026, 3, 27, 10, 0, tzinfo=UTC), datetime(2026, 3, 28, 19, 0), 12),
        # Friday before the last Sunday of October: clocks go back at 03:00.
        (datetime(2026, 10, 23, 10, 0, tzinfo=UTC), datetime(2026, 10, 24, 19, 0), 14),
    ],
)
def test_demo_rota_is_right_across_daylight_saving_changes(
    db: Any, now: datetime, change_night: datetime, hours: int
) -> None:
    summary = load_demo(now)
    assert summary is not None
    shifts = list(db.session.scalars(select(Shift).where(Shift.circle_id == summary.circle_id)))
    zone_ids = list(db.session.scalars(select(Zone.id).where(Zone.circle_id == summary.circle_id)))
    _assert_covered(shifts, zone_ids, now - timedelta(hours=35), hours=35 + 7 * 24)
    for shift in shifts:
        starts = shift.starts_at.astimezone(BRUSSELS)
        ends = shift.ends_at.astimezone(BRUSSELS)
        assert (starts.hour, starts.minute) in {(8, 0), (19, 0)}
        assert (ends.hour, ends.minute) in {(8, 0), (19, 0)}
        if starts.replace(tzinfo=None) == change_night:
            assert shift.ends_at - shift.starts_at == timedelta(hours=hours)
        elif starts.hour == 19:
            assert shift.ends_at - shift.starts_at == timedelta(hours=13)
        else:
            assert shift.ends_at - shift.starts_at == timedelta(hours=11)
    assert any(
        s.starts_at.astimezone(BRUSSELS).replace(tzinfo=None) == change_night for s in shifts
    )


def test_demo_rota_puts_different_doctors_in_each_zone() -> None:
    since = datetime(2026, 6, 1, 12, tzinfo=UTC)
    plans = demo_rota(since, since + timedelta(days=7), "Europe/Brussels")
    by_slot: dict[tuple[Any, Any], list[tuple[int, int]]] = {}
    for plan in plans:
        for day in plan.days:
            by_slot.setdefault((day, plan.start), []).append((plan.zone_index, plan.doctor_index))
    assert len(by_slot) == 2 * 8  # from the slot in progress on 1 June to the night of 8 June
    for slot in by_slot.values():
        assert sorted(zone for zone, _ in slot) == [0, 1, 2]
        assert len({doctor for _, doctor in slot}) == 3


# --------------------------------------------------------------------------- README


def test_readme_documents_every_variable() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    extra = (
        "ONCALL_BIND",
        "ONCALL_WEB_WORKERS",
        "ONCALL_WEB_THREADS",
        "ONCALL_TEST_PG",
        "ONCALL_TEST_REDIS",
    )
    missing = [v for v in (*VARIABLES, *extra) if f"`{v}`" not in readme]
    assert not missing
    commands = re.findall(
        r"^\s*(make \w+)\s*$", readme.split("## Quick start")[1].split("\n## ")[0], re.MULTILINE
    )
    assert commands == ["make run", "make test"]


# --------------------------------------------------------------------------- serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _oncall() -> list[str]:
    script = Path(sys.executable).with_name("oncall")
    return [str(script)] if script.exists() else [sys.executable, "-m", "oncall.cli"]


@pytest.mark.slow
def test_serve_demo_on_sqlite_answers(tmp_path: Path) -> None:
    """``oncall serve --demo`` with no configuration: SQLite, no Redis, no broker."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCALL_")}
    env["ONCALL_INSTANCE_PATH"] = str(tmp_path / "instance")
    log = (tmp_path / "serve.log").open("w+")
    server = subprocess.Popen(
        [*_oncall(), "serve", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def output() -> str:
        log.seek(0)
        return log.read()[-6000:]

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                server.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            else:
                pytest.fail(f"oncall serve exited with {server.returncode}:\n{output()}")
            try:
                if requests.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"no answer on /health in 90 s:\n{output()}"

        assert (tmp_path / "instance" / "oncall.sqlite3").exists()
        spec = requests.get(f"{base}/api/v1/openapi.json", timeout=10)
        assert spec.status_code == 200
        assert "/api/v1/auth/tokens" in spec.json()["paths"]

        email = dict((role, e) for role, e in reversed(demo_logins()))["dispatcher"]
        login = requests.post(
            f"{base}/api/v1/auth/tokens",
            json={"email": email, "password": DEMO_PASSWORD},
            timeout=10,
        )
        assert login.status_code in (200, 201), login.text
        token = login.json()["token"]
        me = requests.get(
            f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert me.status_code == 200, me.text
        assert me.json()["email"] == email

        # The safety core runs in this one process: a panic escalates at once.
        logins = dict((role, e) for role, e in reversed(demo_logins()))

        def bearer(role: str) -> dict[str, str]:
            answer = requests.post(
                f"{base}/api/v1/auth/tokens",
                json={"email": logins[role], "password": DEMO_PASSWORD},
                timeout=10,
            )
            return {"Authorization": f"Bearer {answer.json()['token']}"}

        pressed = requests.post(f"{base}/api/v1/panic", json={}, headers=bearer("doctor"),
                                timeout=10)
        assert pressed.status_code == 201, pressed.text
        alert = requests.get(f"{base}/api/v1/alerts/{pressed.json()['alert_id']}",
                             headers=bearer("coordinator"), timeout=10).json()
        assert alert["kind"] == "panic"
        assert {c["target"] for c in alert["claims"]} == {"coordinator", "police"}
        out = output()
        assert f"http://localhost:{port}/" in out
        assert DEMO_PASSWORD in out

        server.terminate()  # SIGTERM: a clean stop
        assert server.wait(timeout=20) == 0, output()
        assert "oncall stopped." in output()
    finally:
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def test_webhook_secret_prints_what_deliveries_are_signed_with(app: APIFlask, db: Any) -> None:
    from oncall.notify.signing import sign, webhook_secret
    from tests import factories as f

    circle = f.make_circle("Cercle signé")
    other = f.make_circle("Autre cercle signé")
    result = invoke(app, "webhook-secret", "--circle", "Cercle signé")
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret == webhook_secret(app.config["SECRET_KEY"], circle.id)
    assert secret != webhook_secret(app.config["SECRET_KEY"], other.id)
    assert sign(secret, 1, b"{}").startswith("sha256=")
    missing = invoke(app, "webhook-secret", "--circle", "Nope")
    assert missing.exit_code != 0
    assert "No circle named" in missing.output
