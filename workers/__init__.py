"""Background work: the Celery app and its tasks, and the scheduler process.

Workers call service functions of ``oncall``; nothing in ``oncall`` imports this
package (the command line imports it lazily to start a worker or the scheduler).
"""
