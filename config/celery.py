"""Celery configuration (``celery_app.config_from_object("config.celery")``).

Read once when the Celery app first needs its configuration. The broker comes from
``ONCALL_BROKER_URL``; results, which only a few tasks keep, go to the same Redis.

Tasks are acknowledged late and rejected back to the queue when a worker dies, so a
task may run twice: every task must be idempotent (lock the row, check the state
again). A task with a countdown stays unacknowledged in the worker until it runs; on
Redis it is delivered again once the visibility timeout passes, so countdowns are
capped at :data:`MAX_COUNTDOWN_SECONDS`, well below :data:`VISIBILITY_TIMEOUT`.
"""

from __future__ import annotations

import os

from kombu import Exchange, Queue

#: Seconds before Redis hands an unacknowledged message to another worker.
VISIBILITY_TIMEOUT = 3600
#: The longest countdown a task may be given (a quarter of the visibility timeout).
MAX_COUNTDOWN_SECONDS = VISIBILITY_TIMEOUT // 4

CRITICAL = "critical"
DEFAULT = "default"

#: Every task, by its explicit name, and its queue. Escalation steps and
#: notification delivery go on ``critical`` so that a backlog of ordinary work never
#: delays them; a test fails if a registered task has no entry here.
TASK_ROUTES: dict[str, dict[str, str]] = {
    "system.ping": {"queue": DEFAULT},
    "alerts.process_due": {"queue": CRITICAL},
    "notify.deliver": {"queue": CRITICAL},
    "notify.relay": {"queue": CRITICAL},
}

broker_url = os.environ.get("ONCALL_BROKER_URL", "")
result_backend = broker_url if broker_url.startswith(("redis://", "rediss://")) else None
broker_connection_retry_on_startup = True
#: The same visibility timeout everywhere it is read (transport, results, and the
#: option name older kombu versions look up), and short socket timeouts so that a
#: web request never waits long on a broker that is down.
broker_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
result_backend_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT}
visibility_timeout = VISIBILITY_TIMEOUT

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# A publish that fails is retried briefly, then given up: the rows are committed
# and the scheduler's sweep finds them.
task_publish_retry_policy = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# With late acknowledgement, a task running when the broker connection drops is
# cancelled and redelivered rather than finished twice.
worker_cancel_long_running_tasks_on_connection_loss = True

# Most tasks move rows in the database and return nothing worth keeping.
task_ignore_result = True
result_expires = 3600

# Each queue has its own direct exchange and routing key, so a message reaches
# exactly one queue.
task_default_queue = DEFAULT
task_default_exchange = DEFAULT
task_default_routing_key = DEFAULT
task_queues = (
    Queue(CRITICAL, Exchange(CRITICAL, type="direct"), routing_key=CRITICAL),
    Queue(DEFAULT, Exchange(DEFAULT, type="direct"), routing_key=DEFAULT),
)
task_create_missing_queues = False
task_routes = TASK_ROUTES

worker_task_log_format = (
    "%(asctime)s %(levelname)s [%(processName)s] %(task_name)s[%(task_id)s] %(name)s: %(message)s"
)
worker_log_format = "%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s"
