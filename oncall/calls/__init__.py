"""The call log: calls, callers and telephone-system events."""
