"""What the safety-core benchmarks share: a deployment of their own, data, figures.

Each benchmark runs the service as it runs in production, on its own fresh
PostgreSQL database: real Celery workers (``oncall worker``), the real scheduler
process (``oncall scheduler``), optionally the web server (``oncall web``), and a
webhook receiver in a separate process (``python -m tests.peers webhook``) that
writes one JSON line per delivery with its receive time. The benchmark process
plays the web application where it arms deadlines itself: it commits with the
broker as its sender, so that every armed deadline hands its wake-up to the
broker as a request would.

Everything started here is stopped, and the database dropped, when the
:class:`Deployment` block ends, also on failure or Ctrl+C.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import psycopg
import redis
from sqlalchemy import text

from config.settings import Settings
from oncall import create_app
from oncall.alerts import deadlines
from oncall.calls.models import Call
from oncall.circles.models import EscalationPolicy
from oncall.cli import upgrade_database
from oncall.core.clock import utcnow
from oncall.extensions import db
from oncall.notify.models import NotificationChannel
from oncall.notify.signing import webhook_secret
from oncall.visits.models import Visit
from tests import factories as f
from tests.conftest import fresh_database
from tests.peers.base import free_port
from tests.safety.processes import OncallProcess, ProcessSet, flush_redis, oncall_env, wait_until

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("ONCALL_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
#: The Redis database of the benchmarks on the shared server (flushed before and after).
BENCH_REDIS_URL = os.environ.get("ONCALL_BENCH_REDIS", "redis://127.0.0.1:6379/12")
SECRET = "bench-secret-key-" + "s" * 40

#: One step: the coordinators, as soon as the deadline passes.
COORDINATOR_AT_ONCE = [
    {"target": "coordinator", "after_seconds": 0, "repeat_every_seconds": None,
     "stop_on": "acknowledge"},
]

CALL_VALUES: dict[str, Any] = {
    "caller_number": "+3221234567",
    "patient_name": "Bench patient",
    "patient_age": 84,
    "patient_phone": "+3221234567",
    "address_street": "Rue du Banc",
    "address_number": "1",
    "address_postcode": "1000",
    "address_city": "Bruxelles",
    "reason": "Fever",
    "identity_verified": True,
}

#: The body of ``POST /api/v1/calls`` the call loggers send.
CALL_BODY: dict[str, Any] = {
    "caller_number": "0470 12 34 56",
    "caller_name": "Bench caller",
    "reason": "fever since this morning",
    "patient": {"name": "Bench patient", "age": 42},
    "address": {"street": "Rue du Banc", "number": "1", "postcode": "1000",
                "city": "Bruxelles"},
    "outcome": "consultation_booked",
}


# --------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of ``values`` (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def stats(values: Sequence[float]) -> dict[str, float]:
    """Count, p50, p90, p99 and max of ``values``."""
    return {
        "n": float(len(values)),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }


def fmt_stats(values: Sequence[float], unit: str = "s", scale: float = 1.0) -> str:
    """``n=..., p50 ... p99 ... max ...`` in ``unit`` (values multiplied by ``scale``)."""
    s = stats(values)
    return (f"n={int(s['n'])}  p50 {s['p50'] * scale:.3f} {unit}  p90 {s['p90'] * scale:.3f} "
            f"{unit}  p99 {s['p99'] * scale:.3f} {unit}  max {s['max'] * scale:.3f} {unit}")


def machine() -> dict[str, Any]:
    """What the figures ran on, and how busy it was."""
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    pg = "?"
    with contextlib.suppress(Exception), psycopg.connect(
        f"{PG_SERVER}/postgres", autocommit=True
    ) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg = str(row[0]).split()[0] if row else "?"
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024),
        "python": platform.python_version(),
        "postgresql": pg,
        "load": tuple(round(x, 2) for x in os.getloadavg()),
    }


def print_machine(label: str, redis_url: str | None = None) -> dict[str, Any]:
    """Print the machine line (with the Redis version when given) and return it."""
    info = machine()
    if redis_url:
        with contextlib.suppress(Exception):
            client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
            info["redis"] = client.info("server").get("redis_version", "?")
            client.close()
    print(f"[{label}] machine: {info['cores']} cores, {info['memory_gib']} GiB, "
          f"Python {info['python']}, PostgreSQL {info['postgresql']}, "
          f"Redis {info.get('redis', '?')}, load average {info['load']}", flush=True)
    return info


def say(label: str, message: str) -> None:
    """A progress line on standard output, with the time of day."""
    print(f"[{label} {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- database


# --------------------------------------------------------------------------- redis


class PrivateRedis:
    """A redis-server of the benchmark's own, on a free port, that it may wipe and restart."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] = (log_dir / "redis.log").open("ab")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1,
                           socket_timeout=2)

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.log_dir)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}")
            client = self.client()
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
            finally:
                client.close()

        wait_until(answers, 10, "the private redis-server never answered")

    def wipe_and_restart(self, down_seconds: float = 0.0) -> tuple[float, float]:
        """FLUSHALL, stop the server (nothing saved), start it again on the same port.

        Returns the wall-clock instants (unix seconds) of the wipe and of the
        server answering again. ``down_seconds`` keeps it stopped that long.
        """
        client = self.client()
        wiped = time.time()
        try:
            client.flushall()
        finally:
            client.close()
        if self.proc is not None:
            # SIGTERM: with saving off the server exits at once and keeps nothing.
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if down_seconds > 0:
            time.sleep(down_seconds)  # the outage itself, on purpose
        self.start()
        return wiped, time.time()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            self._log.close()


# --------------------------------------------------------------------------- receiver


@dataclass
class Received:
    """One delivery the receiver wrote down."""

    key: str
    received_at: float
    status: int
    attempt: int | None
    alert_id: int | None
    due_at: float | None


class ReceiverProcess:
    """``python -m tests.peers webhook`` in its own process, read through its JSON lines."""

    def __init__(self, log_dir: Path, secrets: Iterable[str]) -> None:
        self.log_path = log_dir / "receiver.jsonl"
        self.log_path.touch()
        self._err = (log_dir / "receiver.err").open("ab")
        args = [sys.executable, "-m", "tests.peers", "webhook", "--log", str(self.log_path)]
        for secret in secrets:
            args += ["--secret", secret]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL,
            start_new_session=True, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the receiver did not start (exit {self.proc.wait(5)})")
        #: The receiver's base address for webhooks: ``<url>/<anything>``.
        self.url: str = json.loads(line)["url"]
        self.lines: list[Received] = []
        self._offset = 0
        self._lock = threading.Lock()

    def poll(self) -> list[Received]:
        """Read the deliveries written since the last call; return the new ones."""
        with self._lock:
            with self.log_path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
            end = chunk.rfind(b"\n")
            if end < 0:
                return []
            self._offset += end + 1
            new = []
            for raw in chunk[: end + 1].splitlines():
                data = json.loads(raw)
                due = data.get("due_at")
                new.append(Received(
                    key=str(data.get("key")),
                    received_at=float(data["received_at"]),
                    status=int(data.get("status") or 0),
                    attempt=data.get("attempt"),
                    alert_id=data.get("alert_id"),
                    due_at=datetime.fromisoformat(due).timestamp() if due else None,
                ))
            self.lines.extend(new)
            return new

    def accepted(self) -> list[Received]:
        self.poll()
        return [r for r in self.lines if 200 <= r.status < 300]

    def first_by_key(self) -> dict[str, Received]:
        """The first accepted delivery of each idempotency key."""
        first: dict[str, Received] = {}
        for r in self.accepted():
            if r.key not in first:
                first[r.key] = r
        return first

    def repeated_keys(self) -> dict[str, int]:
        """Keys accepted more than once, with how many times."""
        counts: dict[str, int] = {}
        for r in self.accepted():
            counts[r.key] = counts.get(r.key, 0) + 1
        return {k: n for k, n in counts.items() if n > 1}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(OSError):
            self._err.close()


# --------------------------------------------------------------------------- deployment


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)



@dataclass
class World:
    """A circle with a zone, a coordinator, a dispatcher, doctors (and bearer tokens)."""

    circle_id: int
    zone_id: int
    coordinator_id: int
    dispatcher_id: int
    doctor_ids: list[int]
    police_id: int | None = None
    tokens: dict[int, str] = field(default_factory=dict)


class Deployment:
    """A benchmark's own service: database, Redis, processes and receiver.

    The benchmark process has an application context pushed for the whole block,
    with the broker as its sender (the CelerySender, as in ``oncall web``).
    """

    def __init__(self, name: str, *, private_redis: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.private_redis = private_redis
        self.extra_env = dict(env or {})
        self.redis: PrivateRedis | None = None
        self.receiver: ReceiverProcess | None = None
        self.workers: list[OncallProcess] = []
        self.scheduler: OncallProcess | None = None
        self.web: OncallProcess | None = None
        self.web_url = ""
        #: Workers that exited on their own and were started again (name, when, log tail).
        self.restarts: list[tuple[str, float, str]] = []
        self._supervising = threading.Event()
        self._worker_numbers = itertools.count(1)
        self._stack = ExitStack()

    # life cycle ---------------------------------------------------------------

    def __enter__(self) -> Self:
        stack = self._stack
        # SIGTERM ends the benchmark like Ctrl+C: through the cleanup below.
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        stack.callback(signal.signal, signal.SIGTERM, previous)
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"oncall-bench-{self.name}-"))
            say(self.name, f"logs in {self.dir}")
            self.db_url = stack.enter_context(fresh_database(f"oncall_bench_{self.name}"))
            if self.private_redis:
                self.redis = PrivateRedis(self.dir)
                stack.callback(self.redis.stop)
                self.redis.start()
                self.broker_url = self.redis.url
            else:
                self.broker_url = BENCH_REDIS_URL
                flush_redis(self.broker_url)
                stack.callback(flush_redis, self.broker_url)
            self.settings = Settings(
                profile="production", secret_key=SECRET, database_url=self.db_url,
                broker_url=self.broker_url, redis_url=self.broker_url,
                instance_path=str(self.dir / "instance"), log_level="WARNING",
            ).validate()
            # This process's own warnings (a broker that is down...) go to a file.
            logging.basicConfig(filename=str(self.dir / "driver.log"), level=logging.WARNING,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            self.app = create_app(self.settings)
            ctx = self.app.app_context()
            ctx.push()
            stack.callback(self._leave_app, ctx)
            upgrade_database()
            env = oncall_env(self.settings, self.broker_url, ONCALL_PROFILE="production",
                             ONCALL_LOG_LEVEL="INFO", **self.extra_env)
            self.procs = ProcessSet(self.dir, env)
            stack.callback(self.procs.stop_all)
        except BaseException:
            stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            with contextlib.suppress(Exception):
                print(self.procs.describe(2000), file=sys.stderr)
        self._stack.close()

    def _leave_app(self, ctx: Any) -> None:
        with contextlib.suppress(Exception):
            db.session.remove()
        with contextlib.suppress(Exception):
            db.engine.dispose()
        ctx.pop()

    # processes ---------------------------------------------------------------

    def start_receiver(self, circle_ids: Iterable[int]) -> ReceiverProcess:
        self.receiver = ReceiverProcess(
            self.dir, [webhook_secret(SECRET, cid) for cid in circle_ids]
        )
        self._stack.callback(self.receiver.stop)
        return self.receiver

    def start_workers(self, count: int = 1, concurrency: int = 4) -> list[OncallProcess]:
        started = [
            self.procs.worker(f"worker{next(self._worker_numbers)}", concurrency=concurrency,
                              wait_ready=False)
            for _ in range(count)
        ]
        for proc in started:
            proc.wait_for_log(" ready.", 90)
        self.workers += started
        return started

    def start_scheduler(self) -> OncallProcess:
        self.scheduler = self.procs.scheduler()
        return self.scheduler

    def start_web(self, workers: int = 2, threads: int = 4) -> str:
        """``oncall web`` (gunicorn) on a free port; its base URL once /health answers."""
        port = free_port()
        self.web = self.procs.start("web", [
            "web", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--threads", str(threads),
        ])
        url = f"http://127.0.0.1:{port}"
        web = self.web

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                    return bool(r.status == 200)
            except (OSError, urllib.error.URLError):
                return False

        wait_until(answers, 60, "the web server never answered /health", watch=[web])
        self.web_url = url
        return url

    def supervise_workers(self, concurrency: int, delay: float = 1.0) -> None:
        """Start again, after ``delay`` seconds, any worker that exits, as the deployment's
        supervisor does (docker compose's ``restart: unless-stopped``)."""
        self._supervising.set()
        self._stack.callback(self._supervising.clear)

        def watch() -> None:
            while self._supervising.is_set():
                for proc in list(self.workers):
                    if not proc.alive() and self._supervising.is_set():
                        self.workers.remove(proc)
                        self.restarts.append((proc.name, time.time(), proc.tail(600)))
                        say(self.name, f"{proc.name} exited ({proc.returncode}); the "
                                       f"supervisor starts another in {delay:g} s")
                        self._supervising.wait(delay)
                        if self._supervising.is_set():
                            with contextlib.suppress(Exception):
                                self.start_workers(1, concurrency)
                self._supervising.wait(0.2)

        threading.Thread(target=watch, name="supervisor", daemon=True).start()

    @property
    def watched(self) -> list[OncallProcess]:
        return [p for p in [*self.workers, self.scheduler, self.web] if p is not None]

    def check_alive(self) -> None:
        """Fail if a process that should run has exited."""
        for proc in self.watched:
            if self._supervising.is_set() and proc in self.workers:
                continue
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.returncode}:\n"
                                   + proc.tail(3000))

    def moved_by(self) -> dict[str, int]:
        """Deadlines each process marked missed (from the engine's log lines): which
        share the fast path (workers) took and which the sweep (scheduler)."""
        pattern = re.compile(r"engine: (\d+) missed")
        return {
            proc.name: sum(int(m.group(1)) for m in pattern.finditer(proc.log()))
            for proc in self.procs.processes if proc.name != "web"
        }

    def trouble(self) -> list[str]:
        """Error lines and tracebacks the processes logged."""
        found = []
        for proc in self.procs.processes:
            for line in proc.log().splitlines():
                if "Traceback" in line or " ERROR " in line or " CRITICAL " in line:
                    found.append(f"{proc.name}: {line[:300]}")
        return found

    # data --------------------------------------------------------------------

    def make_world(self, *, doctors: int = 1, police: bool = False, shifts: bool = False,
                   tokens: bool = False) -> World:
        """A circle, a zone, a coordinator, a dispatcher and ``doctors`` doctors."""
        circle = f.make_circle(f"Bench {self.name}")
        zone = f.make_zone(circle, "Centre")
        coordinator = f.make_user(circle, "coordinator")
        dispatcher = f.make_user(circle, "dispatcher")
        docs = [f.make_user(circle, "doctor") for _ in range(doctors)]
        world = World(circle.id, zone.id, coordinator.id, dispatcher.id, [d.id for d in docs])
        if police:
            world.police_id = f.make_police_contact(circle).id  # circle-wide
        if shifts:
            start = utcnow() - timedelta(hours=1)
            for doc in docs:
                f.make_shift(zone, doc, start, start + timedelta(hours=12))
        if tokens:
            for user in (coordinator, dispatcher, *docs):
                world.tokens[user.id] = f.token_for(user)
        return world

    def add_webhook(self, circle_id: int, path: str, *, user_id: int | None = None,
                    police_contact_id: int | None = None) -> None:
        """A webhook channel on the receiver's ``/hook/<path>`` for a user or police contact."""
        assert self.receiver is not None
        now = utcnow()
        db.session.add(NotificationChannel(
            circle_id=circle_id, user_id=user_id, police_contact_id=police_contact_id,
            kind="webhook", address=f"{self.receiver.url}/{path}", active=True, key_version=1,
            created_at=now, updated_at=now,
        ))
        db.session.commit()

    def set_policy(self, circle_id: int, kind: str, steps: list[dict[str, Any]]) -> None:
        db.session.add(EscalationPolicy(circle_id=circle_id, alert_kind=kind, steps=steps,
                                        updated_at=utcnow()))
        db.session.commit()

    def bulk_visits(self, world: World, count: int, doctor_id: int | None = None) -> list[int]:
        """``count`` assigned visits (each from its own call) written in bulk; their ids."""
        now = utcnow()
        doctor = doctor_id or world.doctor_ids[0]
        ids: list[int] = []
        for start in range(0, count, 2000):
            n = min(2000, count - start)
            calls = [Call(circle_id=world.circle_id, created_at=now, updated_at=now,
                          **CALL_VALUES) for _ in range(n)]
            db.session.add_all(calls)
            db.session.flush()
            visits = [
                Visit(circle_id=world.circle_id, call_id=c.id, zone_id=world.zone_id,
                      doctor_id=doctor, status="assigned", created_at=now, updated_at=now,
                      assigned_at=now, patient_name=c.patient_name,
                      address_street=c.address_street, address_city=c.address_city)
                for c in calls
            ]
            db.session.add_all(visits)
            db.session.flush()
            ids += [v.id for v in visits]
            db.session.commit()
            db.session.expunge_all()
        return ids

    def arm(self, world: World, plan: Sequence[tuple[int, datetime]], *, batch: int = 50,
            doctor_id: int | None = None, kind: str = "arrival",
            progress: Callable[[int], None] | None = None) -> None:
        """Arm each visit's deadline through ``deadlines.arm``, ``batch`` per committed
        transaction, with the broker as sender (each commit hands over its wake-ups)."""
        doctor = doctor_id or world.doctor_ids[0]
        for start in range(0, len(plan), batch):
            now = utcnow()
            for visit_id, due in plan[start : start + batch]:
                deadlines.arm(circle_id=world.circle_id, visit_id=visit_id, doctor_id=doctor,
                              kind=kind, due_at=due, now=now)
            db.session.commit()
            db.session.expunge_all()
            if progress is not None:
                progress(start + batch)

    def scalar(self, sql: str, **params: Any) -> Any:
        """One value, read fresh (outside any open transaction)."""
        db.session.rollback()
        value = db.session.execute(text(sql), params).scalar()
        db.session.rollback()
        return value

    def rows(self, sql: str, **params: Any) -> list[Any]:
        db.session.rollback()
        found = list(db.session.execute(text(sql), params).all())
        db.session.rollback()
        return found


# --------------------------------------------------------------------------- analysis


def wait_for(condition: Callable[[], bool], timeout: float, dep: Deployment,
             interval: float = 0.05) -> bool:
    """Poll ``condition`` until true (True) or ``timeout`` seconds pass (False);
    fails at once if a process of the deployment exited."""
    limit = time.monotonic() + timeout
    while True:
        if condition():
            return True
        dep.check_alive()
        if time.monotonic() >= limit:
            return False
        time.sleep(interval)


@dataclass
class Stages:
    """Where the time of each message went, from the rows and the receiver (seconds)."""

    wake: list[float] = field(default_factory=list)
    engine: list[float] = field(default_factory=list)
    send: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)


def stages(dep: Deployment, first: dict[str, Received], since: datetime | None = None) -> Stages:
    """Per delivered alert message: due -> engine pass start (wake-up and queue),
    pass start -> first send started (engine transaction, commit, claim for sending),
    send started -> received (HTTP and receiver)."""
    # A message is received before the transaction that records its attempt commits.
    wait_for(lambda: not dep.scalar("SELECT count(*) FROM outbox WHERE state = 'pending'"),
             15, dep, 0.2)
    rows = dep.rows(
        """
        SELECT o.id, a.due_at, a.opened_at, att.started_at
        FROM outbox o
        JOIN alerts a ON a.id = o.alert_id
        JOIN delivery_attempts att ON att.outbox_id = o.id AND att.attempt = 1
        WHERE o.purpose = 'alert.step' AND (CAST(:since AS timestamptz) IS NULL
                                            OR a.due_at >= :since)
        """,
        since=since,
    )
    out = Stages()
    for outbox_id, due_at, opened_at, started_at in rows:
        got = first.get(str(outbox_id))
        if got is None:
            continue
        out.wake.append((opened_at - due_at).total_seconds())
        out.engine.append((started_at - opened_at).total_seconds())
        out.send.append(got.received_at - started_at.timestamp())
        out.total.append(got.received_at - due_at.timestamp())
    return out


def print_stages(label: str, s: Stages) -> None:
    print(f"[{label}] where the time went (per message, seconds):")
    print(f"  due -> engine pass starts (wake-up, Celery hop, queue) {fmt_stats(s.wake)}")
    print(f"  pass start -> send starts (engine transaction, commit)  {fmt_stats(s.engine)}")
    print(f"  send starts -> receiver has it (HTTP, receiver)        {fmt_stats(s.send)}")
    print(f"  total, due -> received                                 {fmt_stats(s.total)}")


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# --------------------------------------------------------------------------- call logging


def run_call_logger(base_url: str, token: str, rate: float, stop: Any, results: Any) -> None:
    """Log calls through ``POST /api/v1/calls`` at a steady ``rate`` until ``stop`` is set.

    Runs in its own process (a multiprocessing target): puts ``(sent, latencies,
    failures)`` on ``results`` when it stops.
    """
    import requests

    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    interval = 1.0 / rate
    latencies: list[float] = []
    failures = 0
    next_at = time.monotonic()
    while not stop.is_set():
        wait = next_at - time.monotonic()
        if wait > 0:
            stop.wait(wait)  # the pace of the traffic, not a wait for a condition
            continue
        next_at += interval
        began = time.monotonic()
        try:
            answer = session.post(f"{base_url}/api/v1/calls", json=CALL_BODY, headers=headers,
                                  timeout=10)
            ok = answer.status_code == 201
        except requests.RequestException:
            ok = False
        latencies.append(time.monotonic() - began)
        failures += 0 if ok else 1
    session.close()
    results.put((len(latencies), latencies, failures))


# --------------------------------------------------------------------------- cpu


def _stat(pid: str) -> tuple[int, float, float] | None:
    """(process group, own CPU ticks, reaped children's CPU ticks) of a process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    # fields[0] is the state; utime, stime, cutime, cstime are fields 14-17 of stat.
    return int(fields[2]), float(fields[11]) + float(fields[12]), float(fields[13]) + float(
        fields[14])


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [float(x) for x in first]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(dep: Deployment) -> dict[str, float]:
    """CPU seconds used so far by each part of the deployment, and by the machine.

    Parts: the workers (every pool process included), the scheduler, the web
    server, the receiver, this benchmark process, the PostgreSQL backends serving
    the benchmark's database (those connected now), the private Redis; ``machine``
    is everything the machine did, including other programs.
    """
    tick = os.sysconf("SC_CLK_TCK")
    groups: dict[int, str] = {}
    for proc in dep.procs.processes:
        groups[proc.pid] = "workers" if proc.name.startswith("worker") else proc.name
    if dep.receiver is not None:
        groups[dep.receiver.proc.pid] = "receiver"
    if dep.redis is not None and dep.redis.proc is not None:
        groups[dep.redis.proc.pid] = "redis"
    database = dep.db_url.rsplit("/", 1)[-1]
    used: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(entry)
        if stat is None:
            continue
        group, own, children = stat
        label = groups.get(group)
        if label is None:
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"postgres:") and database.encode() in cmdline:
                label = "postgresql"
            else:
                continue
        ticks = own + (children if int(entry) == group else 0)
        used[label] = used.get(label, 0.0) + ticks / tick
    times = os.times()
    used["benchmark"] = times.user + times.system
    used["machine"] = _machine_busy()
    return used


def print_cpu(label: str, before: dict[str, float], after: dict[str, float], wall: float,
              per: int, what: str) -> None:
    """CPU seconds each part used between two snapshots, and per ``what``."""
    print(f"[{label}] CPU used over {wall:.1f} s of wall time (2 cores = "
          f"{2 * wall:.0f} CPU-seconds available), per {what} in ms:")
    ours = 0.0
    for part in ("workers", "scheduler", "web", "postgresql", "receiver", "redis", "benchmark"):
        if part in after:
            used = after[part] - before.get(part, 0.0)
            ours += used
            print(f"  {part:<11} {used:8.1f} s  {used / max(per, 1) * 1000:7.2f} ms")
    machine = after["machine"] - before["machine"]
    print(f"  {'all ours':<11} {ours:8.1f} s  {ours / max(per, 1) * 1000:7.2f} ms")
    print(f"  {'machine':<11} {machine:8.1f} s  (other programs: {max(machine - ours, 0):.1f} s)")
