"""End to end: a real Celery worker and the real scheduler process move real alerts.

The test process plays the web application: it arms deadlines, acknowledges and
resolves alerts, and commits, with the broker as its sender (as ``oncall web``
does). A worker (``oncall worker``, prefork) and a scheduler (``oncall
scheduler``, sweeping every second) run as separate processes on the same
database and broker. The doctor, the coordinator and the police contact are
webhooks of one local receiver that checks signatures and idempotency keys; the
circle's policy is shortened to seconds (:data:`tests.safety.scenario.SHORT_POLICY`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import select

from config.settings import Settings
from oncall.alerts import deadlines
from oncall.alerts.models import Deadline
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.extensions import db
from tests.peers import WebhookReceiver
from tests.safety import scenario as sc
from tests.safety.processes import (
    BROKER_URL,
    OncallProcess,
    ProcessSet,
    flush_redis,
    hold_for,
    oncall_env,
    wait_until,
)

pytestmark = pytest.mark.slow

SWEEP_SECONDS = 1.0
#: Log markers of trouble in a worker or scheduler.
TROUBLE = ("Traceback", " ERROR ", " CRITICAL ")


@dataclass
class Stack:
    """The running deployment: its processes and the webhook receiver."""

    procs: ProcessSet
    worker: OncallProcess
    scheduler: OncallProcess
    receiver: WebhookReceiver

    @property
    def watch(self) -> list[OncallProcess]:
        return [self.worker, self.scheduler]

    def log_marks(self) -> dict[str, int]:
        return {p.name: len(p.log()) for p in self.watch}

    def trouble_since(self, marks: dict[str, int]) -> list[str]:
        lines = []
        for proc in self.watch:
            new = proc.log()[marks[proc.name]:]
            lines += [f"{proc.name}: {line}" for line in new.splitlines()
                      if any(word in line for word in TROUBLE)]
        return lines


@pytest.fixture(scope="module")
def stack(app: APIFlask, settings: Settings,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One worker and one scheduler for the module, on the session's test database."""
    flush_redis(BROKER_URL)
    env = oncall_env(settings, BROKER_URL, ONCALL_SCHEDULER_SWEEP_SECONDS=str(SWEEP_SECONDS))
    log_dir: Path = tmp_path_factory.mktemp("escalation-logs")
    with WebhookReceiver() as receiver, ProcessSet(log_dir, env) as procs:
        worker = procs.worker(concurrency=2)
        scheduler = procs.scheduler()
        yield Stack(procs, worker, scheduler, receiver)
    flush_redis(BROKER_URL)


@pytest.fixture
def world_on_call(world: Any, stack: Stack, settings: Settings,
                  fast_path: dispatch.CelerySender) -> Iterator[Any]:
    """The world's circle with webhooks for everyone and the short policy; afterwards,
    the processes must have logged no error."""
    stack.receiver.clear()
    sc.prepare_circle(world, stack.receiver, settings.secret_key)
    marks = stack.log_marks()
    yield world
    assert stack.trouble_since(marks) == [], stack.procs.describe()


def test_a_missed_arrival_escalates_on_time_and_acknowledging_stops_the_repeats(
    stack: Stack, world_on_call: Any
) -> None:
    world, receiver = world_on_call, stack.receiver
    visit_id, due = sc.arm_arrival(world, 1.5)

    wait_until(
        lambda: sc.deliveries_to(receiver, "police")
        and len(sc.deliveries_to(receiver, "coordinator")) >= 3,
        (due - utcnow()).total_seconds() + 15,
        lambda: f"no escalation to the police; received {receiver.deliveries}",
        watch=stack.watch,
    )
    alert = sc.alert_of(visit_id)
    assert alert is not None
    assert alert.kind == "missed_arrival"
    doctor = sc.deliveries_to(receiver, "doctor", alert_id=alert.id)
    coordinator = sc.deliveries_to(receiver, "coordinator", alert_id=alert.id)
    police = sc.deliveries_to(receiver, "police", alert_id=alert.id)
    assert len(doctor) == 1
    assert 0 <= sc.seconds_after(doctor[0], due) < 2.5
    assert 1.5 <= sc.seconds_after(coordinator[0], due) < 4.0
    assert 3.5 <= sc.seconds_after(coordinator[1], due) < 6.5
    assert 5.5 <= sc.seconds_after(coordinator[2], due) < 9.0
    assert [d.body["step"]["repeat"] for d in coordinator[:3]] == [0, 1, 2]
    assert len(police) == 1
    assert 5.5 <= sc.seconds_after(police[0], due) < 9.0

    acknowledged_at = sc.take_charge(world, alert.id)
    wait_until(lambda: sc.settled(alert.id), 10,
               "messages still pending after the acknowledgement")
    told = len(sc.deliveries_to(receiver, "coordinator"))
    # Two more repeat intervals and two sweeps: no coordinator repeat any more.
    hold_for(2 * sc.COORDINATOR_EVERY + 2 * SWEEP_SECONDS + 0.5,
             lambda: len(sc.deliveries_to(receiver, "coordinator")) == told,
             "the coordinator was told again after acknowledging", watch=stack.watch)
    fired = sc.claims(alert.id)
    assert all(c.fired_at <= acknowledged_at for c in fired if c.target == "coordinator")
    assert [c.target for c in fired].count("police") == 1
    acked = sc.alert_of(visit_id)
    assert acked is not None
    assert acked.status == "acknowledged"
    assert acked.next_step_at is None

    sc.take_charge(world, alert.id, resolve=True)
    wait_until(lambda: sc.deliveries_to(receiver, "police", kind="alert.resolved"), 10,
               "the police never got the stand-down", watch=stack.watch)
    sc.check_exactly_once(receiver, alert.id)


def test_resolving_stops_everything_before_the_police_step(
    stack: Stack, world_on_call: Any
) -> None:
    world, receiver = world_on_call, stack.receiver
    visit_id, due = sc.arm_arrival(world, 1.5)
    wait_until(lambda: sc.deliveries_to(receiver, "coordinator"),
               (due - utcnow()).total_seconds() + 10,
               "the coordinator was never told", watch=stack.watch)
    alert = sc.alert_of(visit_id)
    assert alert is not None
    resolved_at = sc.take_charge(world, alert.id, resolve=True)
    assert resolved_at < due + timedelta(seconds=sc.POLICE_AFTER - 1), (
        "too slow to resolve before the police step"
    )

    # Past the police step by three sweeps: nothing more for anyone.
    quiet_until = due + timedelta(seconds=sc.POLICE_AFTER + 3 * SWEEP_SECONDS)
    wait_until(lambda: sc.settled(alert.id), 10, "messages still pending after resolving")
    told = len(receiver.accepted())
    hold_for((quiet_until - utcnow()).total_seconds(),
             lambda: len(receiver.accepted()) == told,
             lambda: f"a message went out after resolving: {receiver.deliveries[told:]}",
             watch=stack.watch)
    fired = sc.claims(alert.id)
    assert "police" not in [c.target for c in fired]
    assert all(c.fired_at <= resolved_at for c in fired)
    assert sc.deliveries_to(receiver, "police", kind="alert.step") == []
    assert sc.deliveries_to(receiver, "police", kind="alert.resolved") == []  # never told
    final = sc.alert_of(visit_id)
    assert final is not None
    assert final.status == "resolved"
    assert final.next_step_at is None
    sc.check_exactly_once(receiver, alert.id)


def test_a_check_in_in_time_opens_nothing(stack: Stack, world_on_call: Any) -> None:
    world, receiver = world_on_call, stack.receiver
    met_visit, due = sc.arm_arrival(world, 3)
    late_visit, late_due = sc.arm_arrival(world, 3)  # the control: nobody checks in
    assert deadlines.close(met_visit, "arrival", "met", utcnow(), world.doctor.id) is not None
    db.session.commit()
    assert utcnow() < due, "the check-in came after the deadline"

    wait_until(lambda: sc.alert_of(late_visit), (late_due - utcnow()).total_seconds() + 5,
               "the missed deadline beside it opened no alert: nothing was running",
               watch=stack.watch)
    hold_for((due + timedelta(seconds=3 * SWEEP_SECONDS) - utcnow()).total_seconds(),
             lambda: sc.alert_of(met_visit) is None,
             "a deadline met in time opened an alert", watch=stack.watch)
    db.session.rollback()
    met = db.session.scalars(select(Deadline).where(Deadline.visit_id == met_visit)).one()
    assert met.state == "met"
    late_alert = sc.alert_of(late_visit)
    assert late_alert is not None
    assert {d.body["alert"]["id"] for d in receiver.accepted()} == {late_alert.id}
