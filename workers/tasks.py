"""Thin tasks: each calls one service function with ids and returns.

Every task has an explicit name and a route in ``config.celery.TASK_ROUTES``.
"""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="system.ping", ignore_result=False)
def ping() -> str:
    """Answer ``"pong"``: proves a worker consumes the queue and can return a result."""
    logger.info("ping")
    return "pong"
