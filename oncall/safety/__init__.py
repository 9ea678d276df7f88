"""safety (built by a later issue)."""
