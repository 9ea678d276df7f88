"""Cross-cutting pieces: time, tenancy, the timeline, column types, task hand-off."""
