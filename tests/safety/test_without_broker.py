"""The scheduler alone keeps the promise: no worker, and a broker that does not answer.

Only ``oncall scheduler`` runs, configured with a Redis that nothing listens on
(as when Redis is down and every worker is gone). The test process sends no
task either. The sweep must open the alert and the relay inside the scheduler
must deliver every step at the policy's times, each message exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from apiflask import APIFlask

from config.settings import Settings
from oncall.core.clock import utcnow
from tests.peers import WebhookReceiver, free_port
from tests.safety import scenario as sc
from tests.safety.processes import OncallProcess, ProcessSet, oncall_env, wait_until

pytestmark = pytest.mark.slow

SWEEP_SECONDS = 1.0


@pytest.fixture(scope="module")
def lonely_scheduler(
    app: APIFlask, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OncallProcess, WebhookReceiver]]:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    env = oncall_env(settings, dead_redis, ONCALL_SCHEDULER_SWEEP_SECONDS=str(SWEEP_SECONDS))
    with WebhookReceiver() as receiver, ProcessSet(tmp_path_factory.mktemp("alone"), env) as ps:
        yield ps.scheduler(), receiver


def test_the_scheduler_escalates_and_delivers_on_its_own(
    lonely_scheduler: tuple[OncallProcess, WebhookReceiver], world: Any, settings: Settings
) -> None:
    scheduler, receiver = lonely_scheduler
    sc.prepare_circle(world, receiver, settings.secret_key)
    visit_id, due = sc.arm_arrival(world, 1.0)

    wait_until(lambda: sc.deliveries_to(receiver, "police"),
               (due - utcnow()).total_seconds() + 15,
               lambda: f"the police were never told; received {receiver.deliveries}",
               watch=[scheduler])
    alert = sc.alert_of(visit_id)
    assert alert is not None
    doctor = sc.deliveries_to(receiver, "doctor", alert_id=alert.id)
    coordinator = sc.deliveries_to(receiver, "coordinator", alert_id=alert.id)
    police = sc.deliveries_to(receiver, "police", alert_id=alert.id)
    # Each step at its time plus at most one sweep interval (and a margin).
    assert 0 <= sc.seconds_after(doctor[0], due) < 1 + 2 * SWEEP_SECONDS
    assert 2 <= sc.seconds_after(coordinator[0], due) < 2 + 2 * SWEEP_SECONDS + 1
    assert 6 <= sc.seconds_after(police[0], due) < 6 + 2 * SWEEP_SECONDS + 1

    sc.take_charge(world, alert.id, resolve=True)
    wait_until(lambda: sc.deliveries_to(receiver, "police", kind="alert.resolved"),
               2 * SWEEP_SECONDS + 5, "the stand-down was never delivered", watch=[scheduler])
    resolved = sc.alert_of(visit_id)
    assert resolved is not None
    assert resolved.status == "resolved"
    sc.check_exactly_once(receiver, alert.id)
    assert "Traceback" not in scheduler.log()
    assert "now the active scheduler" in scheduler.log()
