"""Fixtures of the accounts tests: each test counts login attempts on its own."""

from __future__ import annotations

import uuid
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def own_rate_limit_window(app: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Redis key prefix of this test only, so no other test's attempts count."""
    prefix = f"oncall:rl:test:{uuid.uuid4().hex}:"
    monkeypatch.setitem(app.config, "RATELIMIT_PREFIX", prefix)
    return prefix
