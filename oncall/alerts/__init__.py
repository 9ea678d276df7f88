"""alerts (built by a later issue)."""
