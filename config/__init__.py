"""Deployment configuration: typed settings, Celery and gunicorn configuration."""
