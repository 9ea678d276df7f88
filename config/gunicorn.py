"""gunicorn configuration for the ``web`` service (``gunicorn -c python:config.gunicorn``)."""

import multiprocessing
import os

bind = os.environ.get("ONCALL_BIND", "0.0.0.0:8000")  # inside the container
workers = int(os.environ.get("ONCALL_WEB_WORKERS", str(multiprocessing.cpu_count() * 2 + 1)))
threads = int(os.environ.get("ONCALL_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
# The access log shows paths and status codes only: no query strings, which may
# hold a caller's phone number.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
