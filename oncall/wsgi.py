"""The WSGI application for gunicorn (``oncall web`` serves ``oncall.wsgi:app``).

This module is a process entry point: each gunicorn worker imports it once, so it
configures logging here, as ``oncall``'s ``main()`` does for the other commands.
"""

from __future__ import annotations

from config.settings import from_env
from oncall import create_app
from oncall.cli import configure_logging

settings = from_env()
configure_logging(settings.log_level)
app = create_app(settings)
