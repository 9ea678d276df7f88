"""The scheduler's jobs: stable ids, safe defaults, a heartbeat that is recorded."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from apiflask import APIFlask
from apscheduler.schedulers.background import BackgroundScheduler

from config.settings import Settings
from oncall import create_app
from workers import scheduler as sched_module


@pytest.fixture
def own_app(settings: Settings) -> APIFlask:
    """An application of its own, so that scheduler state stays out of the shared one."""
    return create_app(settings)


def test_scheduler_jobs_have_stable_ids_and_safe_defaults(own_app: APIFlask) -> None:
    app = own_app
    sched = sched_module.build_scheduler(app, BackgroundScheduler)
    sched.start(paused=True)
    try:
        jobs = {job.id: job for job in sched.get_jobs()}
        assert sched_module.HEARTBEAT_JOB_ID in jobs
        for job in jobs.values():
            assert job.misfire_grace_time is None
            assert job.coalesce is True
            assert job.max_instances == 1
    finally:
        sched.shutdown(wait=False)


def test_heartbeat_is_recorded_in_redis(app: APIFlask, settings: Settings) -> None:
    now = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)
    with app.app_context():
        sched_module.record_heartbeat(app, now)
    assert sched_module.last_heartbeat(settings) == now


def test_heartbeat_job_runs_and_records(own_app: APIFlask, settings: Settings) -> None:
    app = own_app
    sched = sched_module.build_scheduler(app, BackgroundScheduler)
    before = datetime.now(UTC)
    sched.start()
    try:
        state = app.extensions[sched_module.EXTENSION_KEY]
        _wait_for(lambda: state.last_heartbeat is not None, "the heartbeat job never ran")
        assert state.last_heartbeat >= before
        stored = sched_module.last_heartbeat(settings)
        assert stored is not None
        assert stored >= before
    finally:
        sched.shutdown(wait=True)


def test_embedded_scheduler_runs_its_job_every_interval(settings: Settings) -> None:
    app = create_app(settings.with_(sweep_interval_seconds=0.05, broker_url=""))
    sched = sched_module.start_embedded_scheduler(app)
    try:
        state = app.extensions[sched_module.EXTENSION_KEY]
        assert state.scheduler is sched
        assert sched.running
        job = sched.get_job(sched_module.EMBEDDED_HEARTBEAT_JOB_ID)
        assert job is not None
        assert job.misfire_grace_time is None
        assert job.max_instances == 1
        _wait_for(lambda: state.last_heartbeat is not None, "the embedded job never ran")
        first = state.last_heartbeat
        _wait_for(lambda: state.last_heartbeat != first, "the embedded job ran only once")
    finally:
        sched.shutdown(wait=True)


def _wait_for(condition: object, message: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, message
        pause.wait(0.02)
