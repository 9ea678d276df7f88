"""The scheduler's jobs and the embedded sweeper.

Stable ids and safe defaults, a heartbeat that is recorded, a sweep that only
the lock holder runs and that survives a database that is down, and an embedded
sweeper that wakes as soon as work is committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from apiflask import APIFlask
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from config.settings import Settings
from oncall import create_app
from oncall.alerts import deadlines
from oncall.alerts.models import Alert, Deadline
from oncall.core import dispatch
from oncall.core.clock import utcnow
from oncall.extensions import db as _db
from oncall.notify.models import NotificationChannel
from tests.peers import WebhookReceiver
from tests.visits.conftest import NOW, make_visit
from workers import scheduler as sched_module
from workers.leader import Leader


@pytest.fixture
def own_app(app: APIFlask, settings: Settings) -> Iterator[APIFlask]:
    """An application of its own, so that scheduler state stays out of the shared one
    (``app`` creates the tables)."""
    application = create_app(settings)
    yield application
    state = application.extensions.get(sched_module.EXTENSION_KEY)
    if state is not None and state.leader is not None:
        state.leader.release()
    with application.app_context():
        _db.engine.dispose()


def test_scheduler_jobs_have_stable_ids_and_safe_defaults(own_app: APIFlask) -> None:
    sched = sched_module.build_scheduler(own_app, BackgroundScheduler)
    sched.start(paused=True)
    try:
        jobs = {job.id: job for job in sched.get_jobs()}
        assert set(jobs) == {
            sched_module.HEARTBEAT_JOB_ID,
            sched_module.LEADER_JOB_ID,
            sched_module.SWEEP_JOB_ID,
            sched_module.RELAY_JOB_ID,
            sched_module.HORIZON_JOB_ID,
            sched_module.AUDIT_JOB_ID,
        }
        for job in jobs.values():
            assert job.misfire_grace_time is None
            assert job.coalesce is True
            assert job.max_instances == 1
        assert jobs[sched_module.SWEEP_JOB_ID].trigger.interval == timedelta(seconds=2)
        assert jobs[sched_module.RELAY_JOB_ID].trigger.interval == timedelta(seconds=2)
    finally:
        sched.shutdown(wait=False)


def test_heartbeat_is_recorded_in_redis(app: APIFlask, settings: Settings) -> None:
    now = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)
    with app.app_context():
        sched_module.record_heartbeat(app, now)
    assert sched_module.last_heartbeat(settings) == now


def test_heartbeat_job_runs_and_records(own_app: APIFlask, settings: Settings) -> None:
    sched = sched_module.build_scheduler(own_app, BackgroundScheduler)
    before = datetime.now(UTC)
    sched.start()
    try:
        state = own_app.extensions[sched_module.EXTENSION_KEY]
        _wait_for(lambda: state.last_heartbeat is not None, "the heartbeat job never ran")
        assert state.last_heartbeat >= before
        stored = sched_module.last_heartbeat(settings)
        assert stored is not None
        assert stored >= before
        assert state.leader.is_leader
    finally:
        sched.shutdown(wait=True)
    # Shutting down gives the lock back: another scheduler can lead at once.
    other = Leader(settings.database_url)
    try:
        assert other.ensure()
    finally:
        other.release()


def _due_deadline(world: Any, due_at: datetime) -> Deadline:
    visit = make_visit(world.zone, "assigned", world.doctor)
    row = deadlines.arm(circle_id=visit.circle_id, visit_id=visit.id, doctor_id=world.doctor.id,
                        kind="arrival", due_at=due_at, now=due_at - timedelta(minutes=1))
    _db.session.commit()
    return row


def _state_of(deadline_id: int) -> str:
    _db.session.rollback()
    return str(_db.session.get(Deadline, deadline_id, populate_existing=True).state)


def test_only_the_lock_holder_sweeps(own_app: APIFlask, world: Any, settings: Settings) -> None:
    deadline = _due_deadline(world, utcnow() - timedelta(seconds=5))
    sched_module.build_scheduler(own_app, BackgroundScheduler)  # not started: jobs run by hand
    holder = Leader(settings.database_url)
    try:
        assert holder.ensure()
        sched_module._sweep_job(own_app)
        assert _state_of(deadline.id) == "armed"  # a standby never sweeps
    finally:
        holder.release()
    sched_module._sweep_job(own_app)
    assert _state_of(deadline.id) == "missed"
    state = own_app.extensions[sched_module.EXTENSION_KEY]
    assert state.leader.is_leader
    assert state.last_sweep is not None


def test_a_sweep_with_the_database_down_is_logged_not_raised(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    down = create_app(settings.with_(database_url="postgresql+psycopg://postgres@127.0.0.1:1/x"))
    caplog.set_level(logging.WARNING, logger="workers.scheduler")
    sched_module._embedded_sweep(down)  # must not raise
    assert any("embedded sweep failed" in r.getMessage() for r in caplog.records)


def test_a_sweep_that_wrote_messages_runs_the_relay_at_once(
    settings: Settings, world: Any
) -> None:
    """The relay runs every minute here: only the sweep's nudge can send in time."""
    app = create_app(settings.with_(scheduler_sweep_seconds=60.0))
    with WebhookReceiver() as receiver:
        _db.session.add(NotificationChannel(
            circle_id=world.circle.id, user_id=world.doctor.id, kind="webhook",
            address=f"{receiver.url}/doctor", active=True, key_version=1,
            created_at=NOW, updated_at=NOW,
        ))
        _db.session.commit()
        sched = sched_module.build_scheduler(app, BackgroundScheduler)
        sched.start()
        try:
            state = app.extensions[sched_module.EXTENSION_KEY]
            _wait_for(lambda: state.last_sweep is not None, "the first sweep never ran")
            deadline = _due_deadline(world, utcnow() - timedelta(seconds=1))
            sched.modify_job(sched_module.SWEEP_JOB_ID, next_run_time=datetime.now(UTC))
            assert receiver.wait_for(1, timeout=5), "the sweep's message waited for the relay"
            assert _state_of(deadline.id) == "missed"
        finally:
            sched.shutdown(wait=True)
            with app.app_context():
                _db.engine.dispose()


def test_the_embedded_sweeper_sweeps_every_interval(app: APIFlask, settings: Settings) -> None:
    embedded = create_app(settings.with_(sweep_interval_seconds=0.05, broker_url=""))
    sweeper = sched_module.start_embedded_scheduler(embedded)
    try:
        state = embedded.extensions[sched_module.EXTENSION_KEY]
        assert state.scheduler is sweeper
        assert sweeper.running
        assert isinstance(dispatch.sender_of(embedded), dispatch.EmbeddedSender)
        _wait_for(lambda: state.last_sweep is not None, "the embedded sweeper never swept")
        first = state.last_sweep
        _wait_for(lambda: state.last_sweep != first, "the embedded sweeper swept only once")
        ready = embedded.test_client().get("/health/ready")
        assert ready.status_code == 200, ready.get_json()
        scheduler = ready.get_json()["checks"]["scheduler"]
        assert scheduler["mode"] == "embedded"
        assert scheduler["running"] is True
        assert scheduler["audit"]["late_deadline_ids"] == []
    finally:
        sweeper.shutdown(wait=True)
        with embedded.app_context():
            _db.engine.dispose()
    assert not sweeper.running


def test_the_embedded_sweeper_wakes_when_work_is_committed(
    settings: Settings, world: Any
) -> None:
    """A deadline armed through the application wakes the sweeper at its due time.

    The interval is a minute: only the wake-up can make the alert open in time.
    """
    app = create_app(settings.with_(sweep_interval_seconds=60.0, broker_url=""))
    sweeper = sched_module.start_embedded_scheduler(app)
    state = app.extensions[sched_module.EXTENSION_KEY]
    try:
        _wait_for(lambda: state.last_sweep is not None, "the embedded sweeper never swept")
        visit = make_visit(world.zone, "assigned", world.doctor)
        due = utcnow() + timedelta(milliseconds=500)
        with app.app_context():
            deadlines.arm(circle_id=visit.circle_id, visit_id=visit.id,
                          doctor_id=world.doctor.id, kind="arrival", due_at=due, now=utcnow())
            _db.session.commit()

        def opened() -> bool:
            _db.session.rollback()
            return bool(_db.session.scalar(select(func.count()).select_from(Alert)))

        _wait_for(opened, "the sweeper did not wake at the deadline", timeout=5)
        alert = _db.session.scalars(select(Alert)).one()
        assert alert.opened_at >= due
        assert (alert.opened_at - due).total_seconds() < 2
    finally:
        sweeper.shutdown(wait=True)
        with app.app_context():
            _db.engine.dispose()


def _wait_for(condition: Callable[[], object], message: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, message
        pause.wait(0.02)


def test_a_broker_that_forgot_its_wake_ups_gets_them_again_at_once(
    settings: Settings, world: Any
) -> None:
    """The horizon runs every 30 s; when Redis comes back empty (its mark gone), the
    leader check runs it within seconds, and it hands the wake-ups over again."""
    broker = "redis://127.0.0.1:6379/10"
    client = redis.Redis.from_url(broker)
    client.flushdb()
    app = create_app(settings.with_(broker_url=broker))
    recorder = dispatch.NullSender()
    app.extensions[dispatch.EXTENSION_KEY] = recorder
    sched = sched_module.build_scheduler(app, BackgroundScheduler)
    sched.start()
    try:
        _wait_for(lambda: client.exists(sched_module.HORIZON_MARK_KEY),
                  "the first horizon never set its mark")
        _due_deadline(world, utcnow() + timedelta(minutes=3))
        before = len(recorder.wakes)
        client.flushdb()  # Redis restarted empty: the mark and the wake-ups are gone
        _wait_for(lambda: len(recorder.wakes) > before, "the horizon did not run again")
        assert client.exists(sched_module.HORIZON_MARK_KEY)
    finally:
        sched.shutdown(wait=True)
        state = app.extensions.get(sched_module.EXTENSION_KEY)
        if state is not None and state.leader is not None:
            state.leader.release()
        client.flushdb()
        client.close()
        with app.app_context():
            _db.engine.dispose()
