"""notify (built by a later issue)."""
