"""Fixtures of the process tests."""

from __future__ import annotations

import pytest
from apiflask import APIFlask

from oncall.core import dispatch
from tests.safety.processes import BROKER_URL


@pytest.fixture
def fast_path(app: APIFlask, monkeypatch: pytest.MonkeyPatch) -> dispatch.CelerySender:
    """The test process sends its wake-ups and tasks to the test broker, as the web does."""
    sender = dispatch.CelerySender(BROKER_URL)
    monkeypatch.setitem(app.extensions, dispatch.EXTENSION_KEY, sender)
    return sender
