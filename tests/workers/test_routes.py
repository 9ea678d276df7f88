"""Every task has an explicit route; the Celery settings that keep tasks safe are set."""

from __future__ import annotations

from config import celery as celery_config
from workers.celery_app import FlaskTask, celery_app


def _registered_tasks() -> list[str]:
    celery_app.loader.import_default_modules()
    return sorted(name for name in celery_app.tasks if not name.startswith("celery."))


def test_every_registered_task_has_an_explicit_route() -> None:
    names = _registered_tasks()
    assert "system.ping" in names
    routes = celery_app.conf.task_routes
    missing = [name for name in names if name not in routes]
    assert not missing, f"tasks without a route in config/celery.py TASK_ROUTES: {missing}"
    queues = {route["queue"] for route in routes.values()}
    assert queues <= {"critical", "default"}


def test_tasks_run_in_an_app_context() -> None:
    for name in _registered_tasks():
        assert isinstance(celery_app.tasks[name], FlaskTask), name


def test_delivery_settings_tolerate_a_lost_worker() -> None:
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_default_queue == "default"
    assert {q.name for q in conf.task_queues} == {"critical", "default"}
    for queue in conf.task_queues:  # a message reaches exactly one queue
        assert queue.exchange.name == queue.routing_key == queue.name
    timeout = conf.broker_transport_options["visibility_timeout"]
    assert timeout == conf.result_backend_transport_options["visibility_timeout"]
    assert timeout == celery_config.VISIBILITY_TIMEOUT
    assert timeout > celery_config.MAX_COUNTDOWN_SECONDS
