"""What the fault tests share: private servers to break, bursts of deadlines, and the
exactly-once check over many alerts.

The fault tests break what the service depends on (a worker, Redis, a scheduler,
a webhook receiver, PostgreSQL) while deadlines fall due, then check that every
alert still reached everyone its policy names, each step fired once and each
message arrived once. Redis and PostgreSQL are broken as private servers started
here, on free ports, so that the rest of the suite never sees them go down.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import psycopg
import redis
from apiflask import APIFlask
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from oncall.alerts import deadlines
from oncall.alerts.models import Alert, Deadline, EscalationClaim
from oncall.circles.models import EscalationPolicy
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.extensions import db
from oncall.notify.models import DeliveryAttempt, OutboxMessage
from tests import factories as f
from tests.peers import HOST, Delivery, WebhookReceiver, free_port
from tests.visits.conftest import make_visit

T = TypeVar("T")

#: The Redis database the fault tests that use the shared Redis take as broker.
FAULT_BROKER_URL = "redis://127.0.0.1:6379/11"
#: Where the PostgreSQL binaries are (Debian's layout).
PG_BIN = Path(os.environ.get("ONCALL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


# --------------------------------------------------------------------------- policies


def step(target: str, after_seconds: int) -> dict[str, Any]:
    """One policy step that fires once (no repeat) until someone acknowledges."""
    return {"target": target, "after_seconds": after_seconds, "repeat_every_seconds": None,
            "stop_on": "acknowledge"}


#: Doctor and coordinator told at once: each alert fires both steps when it opens.
AT_ONCE = [step("doctor", 0), step("coordinator", 0)]
#: Doctor at once, coordinator 2 s later: the second step needs another wake-up or sweep.
COORDINATOR_LATER = [step("doctor", 0), step("coordinator", 2)]


def set_policy(circle_id: int, steps: list[dict[str, Any]]) -> None:
    """Replace the circle's missed-arrival policy (new alerts freeze it); commits."""
    db.session.execute(
        update(EscalationPolicy)
        .where(EscalationPolicy.circle_id == circle_id,
               EscalationPolicy.alert_kind == "missed_arrival")
        .values(steps=steps)
    )
    db.session.commit()


@dataclass
class Crew:
    """A circle with a zone, a doctor and a coordinator (what the scenario helpers need)."""

    circle: Any
    zone: Any
    doctor: Any
    coordinator: Any


def make_crew() -> Crew:
    """A crew in the database of the current application (a private one, say)."""
    circle = f.make_circle("Cercle de garde")
    zone = f.make_zone(circle, "Centre")
    return Crew(circle, zone, f.make_user(circle, "doctor"), f.make_user(circle, "coordinator"))


@contextlib.contextmanager
def sending_with(app: APIFlask, sender: dispatch.Sender) -> Iterator[dispatch.Sender]:
    """Commits of the test process hand their work to ``sender`` inside the block."""
    before = app.extensions[dispatch.EXTENSION_KEY]
    app.extensions[dispatch.EXTENSION_KEY] = sender
    try:
        yield sender
    finally:
        app.extensions[dispatch.EXTENSION_KEY] = before


# --------------------------------------------------------------------------- deadlines


@dataclass(frozen=True)
class Armed:
    """A visit whose arrival deadline was armed, and when it falls due."""

    visit_id: int
    due: datetime


def make_visits(world: Any, count: int) -> list[int]:
    """``count`` visits assigned to the world's doctor, committed, no deadline yet."""
    return [make_visit(world.zone, "assigned", world.doctor).id for _ in range(count)]


def arm(world: Any, visit_ids: Sequence[int], first_in: float, spread: float) -> list[Armed]:
    """Arm the visits' arrival deadlines in one transaction, due from ``first_in`` seconds
    from now, evenly over ``spread`` seconds. The commit hands the wake-ups to the
    application's sender (the broker, unless a test chose otherwise)."""
    now = utcnow()
    first = now + timedelta(seconds=first_in)
    gap = spread / max(1, len(visit_ids) - 1)
    armed = []
    for n, visit_id in enumerate(visit_ids):
        due = first + timedelta(seconds=gap * n)
        deadlines.arm(circle_id=world.circle.id, visit_id=visit_id, doctor_id=world.doctor.id,
                      kind="arrival", due_at=due, now=now)
        armed.append(Armed(visit_id, due))
    db.session.commit()
    return armed


def last_due(armed: Sequence[Armed]) -> datetime:
    return max(a.due for a in armed)


def first_due(armed: Sequence[Armed]) -> datetime:
    return min(a.due for a in armed)


def seconds_until(when: datetime) -> float:
    return max(0.0, (when - utcnow()).total_seconds())


# --------------------------------------------------------------------------- reading


def tolerant(predicate: Callable[[], T]) -> Callable[[], T | bool]:
    """``predicate``, answering False while the database cannot be reached."""

    def check() -> T | bool:
        try:
            return predicate()
        except DBAPIError:
            with contextlib.suppress(Exception):
                db.session.rollback()
            return False

    return check


def alert_ids(armed: Sequence[Armed]) -> dict[int, int]:
    """The id of each visit's alert, by visit (visits without an alert are left out)."""
    db.session.rollback()
    rows = db.session.execute(
        select(Alert.visit_id, Alert.id).where(Alert.visit_id.in_([a.visit_id for a in armed]))
    ).all()
    db.session.rollback()
    return {int(visit_id or 0): int(alert_id) for visit_id, alert_id in rows}


def step_deliveries(receiver: WebhookReceiver) -> list[Delivery]:
    """Accepted deliveries of alert steps, in order."""
    return [d for d in receiver.accepted()
            if isinstance(d.body, dict) and d.body.get("type") == "alert.step"]


def target_of(delivery: Delivery) -> str:
    return delivery.path.rsplit("/", 1)[-1]


def told(receiver: WebhookReceiver) -> set[tuple[int, str]]:
    """(alert id, target) of every accepted step delivery."""
    return {(int(d.body["alert"]["id"]), target_of(d)) for d in step_deliveries(receiver)}


def escalated(receiver: WebhookReceiver, armed: Sequence[Armed],
              policy: Sequence[dict[str, Any]]) -> bool:
    """Every visit has its alert, the receiver accepted every step of it, and every
    outbox row of those alerts is marked delivered.

    The receiver may have a message whose row is still pending: its sender was cut
    between the send and the commit, and the relay sends it again.
    """
    alerts = alert_ids(armed)
    if len(alerts) < len(armed):
        return False
    pairs = told(receiver)
    targets = [s["target"] for s in policy]
    if not all((a, t) in pairs for a in alerts.values() for t in targets):
        return False
    undelivered = db.session.scalar(
        select(func.count()).select_from(OutboxMessage)
        .where(OutboxMessage.alert_id.in_(list(alerts.values())),
               OutboxMessage.state != "delivered")
    )
    db.session.rollback()
    return undelivered == 0


def claims_complete(armed: Sequence[Armed], policy: Sequence[dict[str, Any]]) -> bool:
    """Every visit has its alert and every step of the policy has fired (claims written)."""
    alerts = alert_ids(armed)
    if len(alerts) < len(armed):
        return False
    fired = db.session.scalar(
        select(func.count()).select_from(EscalationClaim)
        .where(EscalationClaim.alert_id.in_(list(alerts.values())))
    )
    db.session.rollback()
    return fired == len(armed) * len(policy)


def rows_of(alerts: Sequence[int]) -> list[OutboxMessage]:
    """The alerts' outbox rows as committed now (read in a new transaction, left open so
    that the rows stay loaded; the next read starts another)."""
    db.session.rollback()
    return list(db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.alert_id.in_(list(alerts)))
        .order_by(OutboxMessage.id).execution_options(populate_existing=True)
    ))


def attempts_of(row_ids: Sequence[int]) -> dict[int, list[DeliveryAttempt]]:
    """Every delivery attempt of the rows, in attempt order, by row (in the current
    transaction, the one that read the rows)."""
    found: dict[int, list[DeliveryAttempt]] = defaultdict(list)
    for attempt in db.session.scalars(
        select(DeliveryAttempt).where(DeliveryAttempt.outbox_id.in_(list(row_ids)))
        .order_by(DeliveryAttempt.outbox_id, DeliveryAttempt.attempt)
    ):
        found[attempt.outbox_id].append(attempt)
    return found


# --------------------------------------------------------------------------- the check


@dataclass
class Tally:
    """What the exactly-once check counted (the figures a report quotes)."""

    alerts: int = 0
    claims: int = 0
    rows: int = 0
    #: Accepted POSTs for these alerts, copies included.
    accepted: int = 0
    #: Idempotency keys accepted more than once, with how many times.
    duplicates: dict[str, int] = field(default_factory=dict)
    #: Per step delivery, seconds from when the step was due to its first acceptance.
    lags: list[float] = field(default_factory=list)

    @property
    def worst_lag(self) -> float:
        return max(self.lags, default=0.0)

    def summary(self) -> str:
        lags = sorted(self.lags)
        median = lags[len(lags) // 2] if lags else 0.0
        return (f"{self.alerts} alerts, {self.claims} claims, {self.rows} outbox rows, "
                f"{self.accepted} accepted POSTs ({len(self.duplicates)} keys resent); "
                f"lag median {median:.2f} s, worst {self.worst_lag:.2f} s")


def check_exactly_once(receiver: WebhookReceiver, armed: Sequence[Armed],
                       policy: Sequence[dict[str, Any]], *,
                       resent_across: tuple[datetime, datetime] | None = None) -> Tally:
    """Each visit opened one alert, each alert fired every step of ``policy`` once (levels
    1..n, no (alert, level) twice), each step wrote one outbox row per target, every row
    was delivered, and the receiver accepted each row's idempotency key, on the right
    target's hook, with a valid signature.

    Copies of a key (the same row sent again) fail the check, unless ``resent_across``
    is the (start, end) of a fault that may cut a sender between its send and its
    commit: then a key may come again only if its first copy arrived before the fault
    ended and the others after it began, and the receiver's de-duplication by key must
    leave exactly the delivered rows.
    """
    tally = Tally()
    rows = rows_of(list(alert_ids(armed).values()))  # opens the transaction read below
    visit_ids = [a.visit_id for a in armed]
    per_visit = Counter(db.session.scalars(select(Alert.visit_id)
                                           .where(Alert.visit_id.in_(visit_ids))))
    assert {v: per_visit[v] for v in visit_ids if per_visit[v] != 1} == {}, (
        "visits without exactly one alert"
    )
    not_missed = db.session.scalar(
        select(func.count()).select_from(Deadline)
        .where(Deadline.visit_id.in_(visit_ids), Deadline.state != "missed")
    )
    assert not_missed == 0
    alerts = {a.id: a for a in db.session.scalars(
        select(Alert).where(Alert.visit_id.in_(visit_ids))
        .execution_options(populate_existing=True))}
    tally.alerts = len(alerts)

    doubled = db.session.execute(
        select(EscalationClaim.alert_id, EscalationClaim.level, func.count())
        .where(EscalationClaim.alert_id.in_(list(alerts)))
        .group_by(EscalationClaim.alert_id, EscalationClaim.level)
        .having(func.count() > 1)
    ).all()
    assert doubled == [], f"(alert, level) claimed twice: {doubled[:10]}"
    fired: dict[int, list[EscalationClaim]] = defaultdict(list)
    for claim in db.session.scalars(
        select(EscalationClaim).where(EscalationClaim.alert_id.in_(list(alerts)))
        .order_by(EscalationClaim.alert_id, EscalationClaim.level)
    ):
        fired[claim.alert_id].append(claim)
    targets = [s["target"] for s in policy]
    wrong = {
        alert_id: [(c.level, c.target) for c in fired[alert_id]]
        for alert_id in alerts
        if [c.level for c in fired[alert_id]] != list(range(1, len(targets) + 1))
        or sorted(c.target for c in fired[alert_id]) != sorted(targets)
    }
    assert wrong == {}, f"alerts whose levels are not 1..{len(targets)} once each: {wrong}"
    tally.claims = sum(len(c) for c in fired.values())

    assert {r.alert_id for r in rows} <= set(alerts)
    tally.rows = len(rows)
    per_claim = Counter(r.claim_id for r in rows)
    assert per_claim == Counter(c.id for claims in fired.values() for c in claims), (
        "not one outbox row per step"
    )
    undelivered = {r.id: (r.state, r.attempts, r.last_error) for r in rows
                   if r.state != "delivered"}
    assert undelivered == {}, f"outbox rows not delivered: {undelivered}"

    mine = [d for d in step_deliveries(receiver) if int(d.body["alert"]["id"]) in alerts]
    tally.accepted = len(mine)
    keys = Counter(d.key for d in mine)
    tally.duplicates = {str(k): n for k, n in keys.items() if n > 1}
    if resent_across is None:
        assert tally.duplicates == {}, f"messages accepted more than once: {tally.duplicates}"
    else:
        began, ended = resent_across
        for key in tally.duplicates:
            seen = sorted(d.received_at for d in mine if d.key == key)
            assert seen[0] <= ended, f"message {key} sent twice after the fault: {seen}"
            assert began <= seen[1], f"message {key} sent twice before the fault: {seen}"
    assert all(d.signature_ok for d in mine), "a delivery failed its signature check"
    # The receiver de-duplicates by Idempotency-Key: what it acts on is one per row.
    assert set(keys) == {str(r.id) for r in rows}
    by_key = {str(r.id): r for r in rows}
    misrouted = [d.key for d in mine
                 if target_of(d) != fired_target(fired, by_key[str(d.key)])]
    assert misrouted == [], f"deliveries on the wrong hook: {misrouted}"

    first_seen: dict[str, Delivery] = {}
    for d in mine:
        first_seen.setdefault(str(d.key), d)
    after = {s["target"]: int(s["after_seconds"]) for s in policy}
    for d in first_seen.values():
        alert = alerts[int(d.body["alert"]["id"])]
        due = alert.due_at + timedelta(seconds=after[target_of(d)])
        tally.lags.append((d.received_at - due).total_seconds())
    db.session.rollback()
    return tally


def fired_target(fired: dict[int, list[EscalationClaim]], row: OutboxMessage) -> str:
    """The target of the claim that wrote ``row``."""
    return next(c.target for c in fired[int(row.alert_id or 0)] if c.id == row.claim_id)


# --------------------------------------------------------------------------- servers


def port_open(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def _wait(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    limit = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= limit:
            raise AssertionError(f"{message} (after {timeout:g} s)")
        time.sleep(0.05)


class RedisServer:
    """A private ``redis-server`` on a free port, without persistence: a kill empties it."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def url(self, database: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{database}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_connect_timeout=1,
                           socket_timeout=2)

    def start(self) -> Self:
        """Start (again) on the same port; returns once it answers PING."""
        self._log = (self.dir / "redis-server.log").open("ab")
        self._proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.dir, start_new_session=True,
        )
        _wait(self._answers, 10, f"redis-server on port {self.port} never answered")
        return self

    def _answers(self) -> bool:
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """``kill -9`` the server: everything it held is gone."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.kill()


class PostgresServer:
    """A private PostgreSQL cluster in a temporary folder, on a free port.

    When the tests run as root, the cluster belongs to the ``postgres`` user
    (PostgreSQL refuses to run as root) and its commands run as that user.
    :meth:`destroy` stops it and removes the folder.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="oncall-fault-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [str(PG_BIN / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, cwd=self.root, capture_output=True, timeout=timeout,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): "
                               f"{done.stdout.decode(errors='replace')}"
                               f"{done.stderr.decode(errors='replace')}")

    def init(self) -> Self:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        return self

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses={HOST} "
                   "-c fsync=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options,
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: sessions are cut, transactions rolled back)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def accepting(self) -> bool:
        return port_open(self.port)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name``; its SQLAlchemy URL."""
        with psycopg.connect(f"postgresql://postgres@{HOST}:{self.port}/postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop the server if it runs (immediately) and remove its folder."""
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def flush(url: str) -> None:
    """Empty the Redis database of ``url``."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()

