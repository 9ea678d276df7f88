"""Faults: break what the service depends on while deadlines fall due; lose and double nothing.

Each test runs real ``oncall worker`` and ``oncall scheduler`` processes (sweeping
every second) and one webhook receiver standing for the doctor and the coordinator
(:mod:`tests.safety.scenario`), then breaks one thing:

* the worker is killed (``kill -9``, children included) as 200 deadlines fall due;
* Redis is killed and started again empty while the deadlines' tasks wait in it;
* two schedulers and two workers run at once, then the active scheduler is killed;
* the webhook receiver is down for 30 seconds;
* PostgreSQL is stopped and started again while the engine works through a burst.

Every test ends with the same check (:func:`tests.safety.faults.check_exactly_once`):
one alert per missed deadline, each step of its policy claimed once (levels 1..n,
no (alert, level) twice), every outbox row delivered, each row's idempotency key
accepted by the receiver on the hook of the step's target. A message is accepted
twice only where the fault can cut a sender between its send and its commit (a
killed worker, a database gone), and then only across the fault.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask

from config.settings import Settings
from oncall import create_app
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.extensions import db
from tests.peers import WebhookReceiver
from tests.safety import faults as fl
from tests.safety import scenario as sc
from tests.safety.processes import (
    SCHEDULER_LEADER,
    SCHEDULER_STANDBY,
    WORKER_READY,
    ProcessSet,
    hold_for,
    oncall_env,
    wait_until,
)

pytestmark = pytest.mark.slow

SWEEP_SECONDS = 1.0
#: Log markers of trouble in a process that was not broken itself.
TROUBLE = ("Traceback", " ERROR ", " CRITICAL ")
#: How long after a fault's end the receiver may still be reading what was sent before it.
RECEIVER_GRACE = timedelta(seconds=0.5)
#: What a Celery 5.7 worker logs when it exits because Redis went away while it held
#: unacknowledged (countdown) tasks: it cannot put them back and stops, instead of
#: reconnecting. The deployment's restart policy starts it again.
CELERY_EXIT_ON_BROKER_LOSS = "Unrecoverable error: AttributeError(\"'NoneType' object has no"


def trouble(log: str) -> list[str]:
    """Lines of ``log`` that speak of an error."""
    return [line for line in log.splitlines() if any(word in line for word in TROUBLE)]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as peer:
        yield peer


@pytest.fixture
def broker(app: APIFlask) -> Iterator[str]:
    """The shared Redis database the fault tests use as broker; the test process sends
    its wake-ups there, as the web does."""
    fl.flush(fl.FAULT_BROKER_URL)
    with fl.sending_with(app, dispatch.CelerySender(fl.FAULT_BROKER_URL)):
        yield fl.FAULT_BROKER_URL
    fl.flush(fl.FAULT_BROKER_URL)


def env_for(settings: Settings, broker_url: str, **overrides: str) -> dict[str, str]:
    return oncall_env(settings, broker_url,
                      ONCALL_SCHEDULER_SWEEP_SECONDS=str(SWEEP_SECONDS), **overrides)


def progress(receiver: WebhookReceiver, armed: list[fl.Armed]) -> str:
    """For a failure message: how far the escalation got."""
    return (f"{len(fl.alert_ids(armed))} of {len(armed)} alerts opened, "
            f"{len(fl.told(receiver))} steps delivered")


# --------------------------------------------------------------------------- (a)


def test_killing_the_worker_as_200_deadlines_fall_due_loses_and_doubles_nothing(
    settings: Settings, world: Any, receiver: WebhookReceiver, broker: str, tmp_path: Path,
) -> None:
    sc.prepare_circle(world, receiver, settings.secret_key)
    fl.set_policy(world.circle.id, fl.AT_ONCE)
    with ProcessSet(tmp_path / "logs", env_for(settings, broker)) as procs:
        worker = procs.worker(wait_ready=False)
        scheduler = procs.scheduler(wait_for=None)
        visits = fl.make_visits(world, 200)
        worker.wait_for_log(WORKER_READY)
        scheduler.wait_for_log(SCHEDULER_LEADER)

        armed = fl.arm(world, visits, first_in=3, spread=2)
        worker.wait_for_log("alerts.process_due[", timeout=5)  # it holds their tasks
        # Right as they fall due: the first message is out, most deadlines still armed.
        wait_until(lambda: receiver.deliveries, fl.seconds_until(fl.first_due(armed)) + 5,
                   "nothing escalated the first deadline", interval=0.01,
                   watch=[worker, scheduler])
        kill_began = utcnow()
        worker.kill()
        kill_ended = utcnow()
        opened_before_kill = len(fl.alert_ids(armed))
        assert opened_before_kill < len(armed), "the kill came after the burst"

        wait_until(lambda: fl.escalated(receiver, armed, fl.AT_ONCE),
                   fl.seconds_until(fl.last_due(armed)) + 20,
                   lambda: progress(receiver, armed), interval=0.2, watch=[scheduler])
        done_at = utcnow()
        # A worker killed between a send and its commit leaves the row pending: the
        # relay sends it again with the same idempotency key and the receiver keeps one.
        # So a key may come twice here, across the kill only; what the receiver acts on
        # (one per key) must be exactly the delivered rows.
        tally = fl.check_exactly_once(receiver, armed, fl.AT_ONCE,
                                      resent_across=(kill_began, kill_ended + RECEIVER_GRACE))

        # A new worker finds nothing left to do: no message goes out again.
        accepted = len(receiver.accepted())
        procs.worker("worker-after")
        hold_for(2 * SWEEP_SECONDS, lambda: len(receiver.accepted()) == accepted,
                 "a message went out again after the restart", watch=[scheduler])
        assert trouble(scheduler.log()) == []
    print(f"\n(a) kill -9 at {opened_before_kill}/200 alerts opened; all escalated "
          f"{(done_at - kill_ended).total_seconds():.1f} s after the kill, "
          f"{(done_at - fl.last_due(armed)).total_seconds():.1f} s after the last due; "
          + tally.summary())
    # From the deadline to the message: a sweep interval, the time the scheduler alone
    # takes to open 200 alerts and send 400 messages on a small machine, and a margin.
    assert tally.worst_lag < 10


# --------------------------------------------------------------------------- (b)


def test_redis_wiped_with_tasks_waiting_delays_no_escalation_beyond_a_sweep(
    app: APIFlask, settings: Settings, world: Any, receiver: WebhookReceiver, tmp_path: Path,
) -> None:
    with fl.RedisServer(tmp_path / "redis") as private_redis:
        url = private_redis.url()
        sc.prepare_circle(world, receiver, settings.secret_key)
        fl.set_policy(world.circle.id, fl.COORDINATOR_LATER)
        with fl.sending_with(app, dispatch.CelerySender(url)), \
                ProcessSet(tmp_path / "logs", env_for(settings, url)) as procs:
            worker = procs.worker(wait_ready=False)
            scheduler = procs.scheduler(wait_for=None)
            visits = fl.make_visits(world, 50)
            worker.wait_for_log(WORKER_READY)
            scheduler.wait_for_log(SCHEDULER_LEADER)

            armed = fl.arm(world, visits, first_in=3, spread=1)
            # The deadlines' tasks are in the broker, held by the worker, unacknowledged.
            client = private_redis.client()
            wait_until(lambda: client.hlen("unacked"), 5, "no task waits in the broker",
                       watch=[worker])
            waiting = int(client.hlen("unacked"))
            client.close()

            private_redis.kill()
            wait_until(lambda: "Connection to broker lost" in worker.log()
                       or not worker.alive(), 10, "the worker never noticed Redis was gone")
            private_redis.start()
            wiped_at = utcnow()
            client = private_redis.client()
            assert client.hlen("unacked") == 0  # the new Redis knows no task
            assert client.llen("critical") == 0
            client.close()
            assert wiped_at < fl.first_due(armed), "too slow: the deadlines fell due already"

            # The scheduler needs no Redis to sweep and relay.
            wait_until(lambda: fl.escalated(receiver, armed, fl.COORDINATOR_LATER),
                       fl.seconds_until(fl.last_due(armed)) + 2 + 15,
                       lambda: progress(receiver, armed), interval=0.2, watch=[scheduler])
            tally = fl.check_exactly_once(receiver, armed, fl.COORDINATOR_LATER)
            assert trouble(scheduler.log()) == []

            # The fast path comes back: the worker reconnects to the new Redis, or, when
            # Celery gave up on it, the worker started again in its place does.
            if worker.alive():
                worker.wait_for_log("Connected to redis", count=2, timeout=20)
                fate = "reconnected"
            else:
                assert CELERY_EXIT_ON_BROKER_LOSS in worker.log(), worker.tail()
                # ...and says so with its exit status, so that a supervisor restarts it.
                assert worker.returncode not in (None, 0), worker.tail()
                procs.worker("worker-restarted")
                fate = "exited (Celery gave up on the lost broker) and was started again"
    lead = (fl.first_due(armed) - wiped_at).total_seconds()
    print(f"\n(b) Redis wiped, back {lead:.1f} s before the first deadline, {waiting} waiting "
          f"tasks lost; the worker {fate}; " + tally.summary())
    # Every step within one sweep interval of its time, plus a margin.
    assert tally.worst_lag < SWEEP_SECONDS + 4


# --------------------------------------------------------------------------- (c)


def test_two_schedulers_and_two_workers_escalate_once_and_the_standby_takes_over(
    app: APIFlask, settings: Settings, world: Any, receiver: WebhookReceiver, broker: str,
    tmp_path: Path,
) -> None:
    sc.prepare_circle(world, receiver, settings.secret_key)
    fl.set_policy(world.circle.id, fl.COORDINATOR_LATER)
    with ProcessSet(tmp_path / "logs", env_for(settings, broker)) as procs:
        leader = procs.scheduler("scheduler-a")
        standby = procs.scheduler("scheduler-b", wait_for=None)
        workers = [procs.worker("worker-a", wait_ready=False),
                   procs.worker("worker-b", wait_ready=False)]
        watch = [leader, standby, *workers]
        visits = fl.make_visits(world, 140)
        standby.wait_for_log(SCHEDULER_STANDBY)
        for worker in workers:
            worker.wait_for_log(WORKER_READY)
        assert leader.log_count(SCHEDULER_LEADER) == 1
        assert standby.log_count(SCHEDULER_LEADER) == 0

        first = fl.arm(world, visits[:120], first_in=3, spread=2)
        wait_until(lambda: fl.escalated(receiver, first, fl.COORDINATOR_LATER),
                   fl.seconds_until(fl.last_due(first)) + 2 + 15,
                   lambda: progress(receiver, first), interval=0.2, watch=watch)
        first_tally = fl.check_exactly_once(receiver, first, fl.COORDINATOR_LATER)
        # Both workers took part; the standby never ran the engine.
        assert all(w.log_count("engine:") > 0 for w in workers), procs.describe()
        assert standby.log_count("engine:") == 0
        assert standby.log_count(SCHEDULER_LEADER) == 0

        leader.kill()
        killed = time.monotonic()
        standby.wait_for_log(SCHEDULER_LEADER, timeout=10)
        takeover = time.monotonic() - killed
        # New deadlines, and no task sent for any of them (as if the web's wake-ups were
        # lost): only the new active scheduler moves them. Half are overdue already,
        # which no wake-up covers: its sweep must find them.
        with fl.sending_with(app, dispatch.NullSender()):
            overdue = fl.arm(world, visits[120:130], first_in=-2, spread=1)
            upcoming = fl.arm(world, visits[130:], first_in=1, spread=2)
        second = overdue + upcoming
        wait_until(lambda: fl.escalated(receiver, second, fl.COORDINATOR_LATER),
                   fl.seconds_until(fl.last_due(second)) + 2 + 15,
                   lambda: progress(receiver, second), interval=0.2,
                   watch=[standby, *workers])
        fl.check_exactly_once(receiver, overdue, fl.COORDINATOR_LATER)
        second_tally = fl.check_exactly_once(receiver, upcoming, fl.COORDINATOR_LATER)
        fl.check_exactly_once(receiver, first, fl.COORDINATOR_LATER)
        assert standby.log_count("engine:") > 0
        for proc in (standby, *workers):
            assert trouble(proc.log()) == [], proc.name
    print(f"\n(c) two schedulers, two workers: {first_tally.summary()}; the standby took over "
          f"{takeover:.1f} s after the kill -9; deadlines after it: {second_tally.summary()}")
    assert first_tally.worst_lag < SWEEP_SECONDS + 4
    assert second_tally.worst_lag < SWEEP_SECONDS + 4


# --------------------------------------------------------------------------- (d)

#: The longest wait between two attempts in this test (the product's default is 15 s).
MAX_BACKOFF = 3
OUTAGE_SECONDS = 30


def test_a_webhook_receiver_down_for_30_s_gets_every_message_once_when_back(
    settings: Settings, world: Any, receiver: WebhookReceiver, broker: str, tmp_path: Path,
) -> None:
    sc.prepare_circle(world, receiver, settings.secret_key)
    fl.set_policy(world.circle.id, fl.AT_ONCE)
    env = env_for(settings, broker, ONCALL_OUTBOX_MAX_BACKOFF_SECONDS=str(MAX_BACKOFF))
    with ProcessSet(tmp_path / "logs", env) as procs:
        worker = procs.worker(wait_ready=False)
        scheduler = procs.scheduler(wait_for=None)
        watch = [worker, scheduler]
        visits = fl.make_visits(world, 20)
        worker.wait_for_log(WORKER_READY)
        scheduler.wait_for_log(SCHEDULER_LEADER)

        receiver.stop()
        down_since = time.monotonic()
        armed = fl.arm(world, visits, first_in=1, spread=1)
        # Escalation does not wait for delivery: every step fires on time.
        wait_until(lambda: fl.claims_complete(armed, fl.AT_ONCE),
                   fl.seconds_until(fl.last_due(armed)) + 5,
                   "the steps did not fire while the receiver was down", watch=watch)
        alerts = list(fl.alert_ids(armed).values())

        def failing(min_attempts: int) -> bool:
            rows = fl.rows_of(alerts)
            return len(rows) == 40 and all(
                r.state == "pending" and r.attempts >= min_attempts and r.last_error
                for r in rows
            )

        wait_until(lambda: failing(2), 15,
                   lambda: "no retries recorded: " + ", ".join(
                       f"{r.id} {r.state} x{r.attempts}" for r in fl.rows_of(alerts)),
                   interval=0.2, watch=watch)
        # The rest of the outage: nothing is delivered, every row stays pending.
        hold_for(OUTAGE_SECONDS - (time.monotonic() - down_since),
                 lambda: failing(2) and not receiver.deliveries,
                 "a row left the pending state while the receiver was down",
                 interval=0.5, watch=watch)
        during = {r.id: r.attempts for r in fl.rows_of(alerts)}
        # Waits of 1, 2, then 3 s: the ~28 s outage makes about ten attempts per row.
        assert min(during.values()) >= 5, during

        receiver.start()  # on the same port
        back = time.monotonic()
        wait_until(lambda: fl.escalated(receiver, armed, fl.AT_ONCE),
                   MAX_BACKOFF + 2 * SWEEP_SECONDS + 5,
                   "not every message was delivered once the receiver was back",
                   interval=0.1, watch=watch)
        recovered = max(d.received_monotonic for d in receiver.deliveries) - back
        tally = fl.check_exactly_once(receiver, armed, fl.AT_ONCE)
        assert len(receiver.deliveries) == 40  # not one POST more than the rows

        # Every failure is on record, then the one success, numbered without a gap.
        rows = {r.id: r for r in fl.rows_of(alerts)}
        attempts = fl.attempts_of(list(rows))
        waits = []
        for row_id, row in rows.items():
            made = attempts[row_id]
            assert [a.attempt for a in made] == list(range(1, row.attempts + 1))
            assert [a.ok for a in made] == [False] * (row.attempts - 1) + [True]
            assert row.attempts > during[row_id]
            assert all(a.detail for a in made)
            waits += [(b.started_at - a.started_at).total_seconds()
                      for a, b in itertools.pairwise(made)]
        # The waits never grew past the cap (plus a sweep and a margin).
        assert max(waits) < MAX_BACKOFF + SWEEP_SECONDS + 2, max(waits)
        # The receiver saw each row's last attempt number, the one that succeeded.
        assert {d.key: d.attempt for d in receiver.deliveries} == {
            str(row_id): row.attempts for row_id, row in rows.items()}
        assert trouble(scheduler.log()) == []
        assert trouble(worker.log()) == []
    print(f"\n(d) receiver down {OUTAGE_SECONDS} s: {min(during.values())}-"
          f"{max(during.values())} failed attempts per row, longest wait {max(waits):.1f} s; "
          f"all delivered {recovered:.1f} s after it came back; " + tally.summary())


# --------------------------------------------------------------------------- (e)


@pytest.fixture
def private_pg() -> Iterator[fl.PostgresServer]:
    """A PostgreSQL server of this test alone, removed afterwards whatever happened."""
    server = fl.PostgresServer()
    try:
        server.init().start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def private_app(settings: Settings, private_pg: fl.PostgresServer, broker: str
                ) -> Iterator[APIFlask]:
    """The application on the private server, its schema created, its context pushed
    (the test process commits there, as the web would)."""
    url = private_pg.create_database("oncall_fault")
    own = create_app(settings.with_(database_url=url, broker_url=broker))
    with own.app_context():
        db.create_all()
        try:
            yield own
        finally:
            db.session.remove()
            db.engine.dispose()


def test_postgresql_restarted_while_deadlines_fall_due_loses_and_doubles_nothing(
    private_app: APIFlask, private_pg: fl.PostgresServer, receiver: WebhookReceiver,
    broker: str, tmp_path: Path,
) -> None:
    own: Settings = private_app.config["ONCALL"]
    crew = fl.make_crew()
    sc.prepare_circle(crew, receiver, own.secret_key)
    fl.set_policy(crew.circle.id, fl.COORDINATOR_LATER)
    with ProcessSet(tmp_path / "logs", env_for(own, broker)) as procs:
        worker = procs.worker(wait_ready=False)
        scheduler = procs.scheduler(wait_for=None)
        watch = [worker, scheduler]
        visits = fl.make_visits(crew, 60)
        worker.wait_for_log(WORKER_READY)
        scheduler.wait_for_log(SCHEDULER_LEADER)

        armed = fl.arm(crew, visits, first_in=3, spread=2)
        # While the engine works through the burst: the first message is out.
        wait_until(lambda: receiver.deliveries, fl.seconds_until(fl.first_due(armed)) + 5,
                   "nothing escalated the first deadline", interval=0.01, watch=watch)
        stop_began = utcnow()
        private_pg.stop("fast")
        stopped_at = utcnow()
        # Down for a few seconds while the rest fall due; worker and scheduler live on.
        hold_for(3, lambda: not private_pg.accepting(), "PostgreSQL came back by itself",
                 watch=watch)
        private_pg.start()
        back_at = utcnow()
        db.session.remove()

        wait_until(fl.tolerant(lambda: fl.escalated(receiver, armed, fl.COORDINATOR_LATER)),
                   fl.seconds_until(fl.last_due(armed)) + 2 + 20,
                   lambda: progress(receiver, armed), interval=0.2, watch=watch)
        done_at = utcnow()
        # A sender cut by the stop between its send and its commit sends again with the
        # same key (the receiver keeps one): copies are allowed across the stop only.
        tally = fl.check_exactly_once(receiver, armed, fl.COORDINATOR_LATER,
                                      resent_across=(stop_began, stopped_at + RECEIVER_GRACE))
        # The scheduler lost its lock with the server and took it again, riding out the
        # outage with warnings only.
        scheduler.wait_for_log(SCHEDULER_LEADER, count=2, timeout=10)
        assert trouble(scheduler.log()) == []
        # The worker's tasks failed while the server was down (the sweep made up for
        # them); on new connections, its next task runs through.
        ran = worker.log_count(" succeeded in ")
        dispatch.sender_of(private_app).send(dispatch.PROCESS_DUE, ())
        worker.wait_for_log(" succeeded in ", count=ran + 1, timeout=10)
    print(f"\n(e) PostgreSQL down {(back_at - stop_began).total_seconds():.1f} s; all "
          f"escalated {(done_at - back_at).total_seconds():.1f} s after it was back; "
          + tally.summary())
    # Whatever fell due during the outage went out within a few sweeps of the restart.
    assert (done_at - back_at).total_seconds() < 2 + 3 * SWEEP_SECONDS + 5
