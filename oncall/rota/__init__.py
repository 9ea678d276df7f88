"""Shifts and who is on duty."""
