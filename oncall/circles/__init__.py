"""Circles (tenants), zones, police contacts and escalation policies."""
