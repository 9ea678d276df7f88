"""Work is handed to the workers only after the transaction commits, and never blocks long."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from typing import Any

import pytest

from oncall.core import dispatch
from oncall.core.clock import utcnow
from tests import factories as f


@pytest.fixture
def sender(app: Any, monkeypatch: pytest.MonkeyPatch) -> dispatch.NullSender:
    recorder = dispatch.NullSender()
    monkeypatch.setitem(app.extensions, dispatch.EXTENSION_KEY, recorder)
    return recorder


def test_nothing_is_sent_before_commit_nor_after_rollback(
    db: Any, sender: dispatch.NullSender
) -> None:
    when = utcnow() + timedelta(minutes=5)
    f.make_circle("Dispatch")  # leaves the session clean
    dispatch.after_commit(dispatch.DELIVER, [1, 2])
    dispatch.wake_at(when)
    assert (sender.sent, sender.wakes) == ([], [])
    db.session.rollback()
    db.session.commit()
    assert (sender.sent, sender.wakes) == ([], [])

    dispatch.after_commit(dispatch.DELIVER, [3])
    dispatch.wake_at(when)
    db.session.commit()
    assert sender.sent == [(dispatch.DELIVER, ([3],))]
    assert sender.wakes == [when]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_broker_that_is_down_is_skipped_for_a_while() -> None:
    sender = dispatch.CelerySender(f"redis://127.0.0.1:{_closed_port()}/0")
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises
        sender.send(dispatch.DELIVER, ([1],))
    started = time.monotonic()
    for _ in range(50):
        with pytest.raises(dispatch.BrokerDown):
            sender.wake_at(utcnow() + timedelta(seconds=30))
    assert time.monotonic() - started < 1.0  # fifty skips, no timeouts waited
