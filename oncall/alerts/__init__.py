"""Deadlines, alerts and the escalation engine (ARCHITECTURE.md, "The safety core")."""
