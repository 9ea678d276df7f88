"""A real Celery worker process consumes the queue and answers."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis
from celery.exceptions import TimeoutError as CeleryTimeout

from config.settings import Settings
from tests.safety.processes import clean_env, oncall_command
from workers.celery_app import make_celery

BROKER_URL = "redis://127.0.0.1:6379/14"


@pytest.mark.slow
def test_real_worker_answers_ping(settings: Settings, tmp_path: Path) -> None:
    broker = redis.Redis.from_url(BROKER_URL)
    broker.flushdb()
    log = (tmp_path / "worker.log").open("w+")
    worker = subprocess.Popen(
        [*oncall_command(), "worker", "--pool", "solo", "--concurrency", "1"],
        env=clean_env(
            ONCALL_PROFILE="test",
            ONCALL_BROKER_URL=BROKER_URL,
            ONCALL_DATABASE_URL=settings.database_url,
            ONCALL_INSTANCE_PATH=str(tmp_path / "instance"),
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = make_celery()
    client.conf.update(broker_url=BROKER_URL, result_backend=BROKER_URL)
    try:
        result = client.send_task("system.ping")
        deadline = time.monotonic() + 60
        answer = None
        while answer is None:
            assert worker.poll() is None, _tail(log, "the worker exited")
            assert time.monotonic() < deadline, _tail(log, "no answer from the worker in 60 s")
            try:
                answer = result.get(timeout=1)
            except CeleryTimeout:
                continue
        assert answer == "pong"
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
        client.close()
        broker.flushdb()
        broker.close()
        log.close()


def _tail(log: object, message: str) -> str:
    log.seek(0)  # type: ignore[attr-defined]
    return message + ":\n" + log.read()[-4000:]  # type: ignore[attr-defined]
