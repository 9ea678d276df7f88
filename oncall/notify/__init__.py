"""Notifications: the outbox, its relay, the channels and their receipts.

This package knows messages and recipients' addresses, not visits or alerts: the
escalation engine renders what to say and hands it here.
"""
