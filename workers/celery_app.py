"""The Celery application, bound to the Flask application as Flask documents it.

Every task runs inside an application context (:class:`FlaskTask`), so it can use
the database session and call service functions. A worker builds the Flask
application when it starts, before forking its pool; elsewhere it is built the
first time a task needs it. Importing this module reads no settings and connects
to nothing.

Workers: ``oncall worker`` (queues ``critical`` and ``default``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

from celery import Celery, Task
from celery.app.log import TaskFormatter
from celery.signals import after_setup_logger, task_postrun, worker_init, worker_process_init
from flask import Flask, has_app_context

logger = logging.getLogger(__name__)

#: Modules holding tasks; the worker imports them at start.
TASK_MODULES = ("workers.tasks",)


class OncallCelery(Celery):
    """A Celery app that knows its Flask application (built on first use)."""

    def __init__(self, *args: Any, flask_app: Flask | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flask_app = flask_app
        self._flask_lock = threading.Lock()
        if flask_app is not None:
            flask_app.extensions["celery"] = self

    @property
    def flask_app_created(self) -> bool:
        """True once the Flask application exists in this process."""
        return self._flask_app is not None

    def flask_app(self) -> Flask:
        """The Flask application of this process, built from the environment on first use."""
        if self._flask_app is None:
            with self._flask_lock:
                if self._flask_app is None:
                    from oncall import create_app

                    app = create_app()
                    app.extensions["celery"] = self
                    self._flask_app = app
        return self._flask_app


class FlaskTask(Task):
    """A task that runs inside the Flask application context."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        app = cast(OncallCelery, self.app).flask_app()
        with app.app_context():
            return self.run(*args, **kwargs)


def make_celery(flask_app: Flask | None = None) -> OncallCelery:
    """A Celery app configured from ``config.celery`` whose tasks run in an app context."""
    app = OncallCelery("oncall", task_cls=FlaskTask, include=TASK_MODULES, flask_app=flask_app)
    app.config_from_object("config.celery")
    return app


celery_app = make_celery()


@worker_init.connect
def _build_flask_app_before_the_pool(sender: Any = None, **_: Any) -> None:
    """A worker builds its Flask application at start, before it forks its pool.

    The first task after a start (often a deadline's wake-up) then runs at once
    instead of waiting for the application to be built. Should building fail,
    Celery logs the error and each task tries again when it runs.
    """
    app = getattr(sender, "app", None)
    if isinstance(app, OncallCelery):
        app.flask_app()


@worker_process_init.connect
def _dispose_engine_after_fork(**_: Any) -> None:
    """A forked worker child never reuses its parent's database connections."""
    if not celery_app.flask_app_created:
        return
    from oncall.extensions import db

    with celery_app.flask_app().app_context():
        db.engine.dispose(close=False)


@task_postrun.connect
def _remove_session(**_: Any) -> None:
    """No database session outlives a task.

    :class:`FlaskTask` pops its application context after the task, which removes
    that context's session; a task run inside an outer context (eagerly, or from a
    test) has its session removed here.
    """
    if has_app_context():
        from oncall.extensions import db

        db.session.remove()


@after_setup_logger.connect
def _task_aware_log_format(**kwargs: Any) -> None:
    """Every log line of a worker carries the current task's name and id."""
    fmt = celery_app.conf.worker_task_log_format
    root: logging.Logger = kwargs["logger"]
    for handler in root.handlers:
        handler.setFormatter(TaskFormatter(fmt, use_color=False))
