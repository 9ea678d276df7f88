"""The consoles' live stream, read over real HTTP from a server in a thread.

Events are published the way the services publish them (a row in a transaction,
a Redis nudge after the commit) and each test waits for what it expects with a
deadline.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy import insert, update
from werkzeug.serving import make_server

from oncall.accounts.models import ApiToken, User
from oncall.core.clock import utcnow
from oncall.extensions import db as _db
from oncall.notify import live
from oncall.notify.models import StreamEvent
from oncall.notify.stream import publish
from tests import factories as f
from tests.conftest import PG_SERVER, World

STREAM = "/api/v1/stream"
#: How long a test waits for something that should happen at once.
WAIT = 5.0


@dataclass
class Sse:
    """One server-sent events connection, read by a thread into a queue."""

    response: requests.Response
    items: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    comments: list[str] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Sse:
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        current: dict[str, str] = {}
        try:
            for line in self.response.iter_lines(chunk_size=1, decode_unicode=True):
                if line == "":
                    if "event" in current:
                        data = current.get("data")
                        self.items.put({
                            "id": int(current["id"]) if "id" in current else None,
                            "event": current["event"],
                            "data": json.loads(data) if data is not None else None,
                        })
                    current = {}
                elif line.startswith(":"):
                    self.comments.append(line)
                else:
                    name, _, value = line.partition(":")
                    current[name] = value[1:] if value.startswith(" ") else value
        except (requests.RequestException, AttributeError, ValueError):
            pass  # the test closed the connection
        finally:
            self.ended.set()

    def next(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next event, or a failure after ``timeout`` seconds."""
        try:
            return self.items.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no event within {timeout} s")

    def take(self, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        limit = time.monotonic() + timeout
        return [self.next(max(limit - time.monotonic(), 0.01)) for _ in range(count)]

    def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Everything that arrives within ``seconds`` (expected: nothing)."""
        found = []
        limit = time.monotonic() + seconds
        while time.monotonic() < limit:
            try:
                found.append(self.items.get(timeout=0.05))
            except queue.Empty:
                continue
        return found

    def close(self) -> None:
        self.response.close()


@dataclass
class Live:
    """The application served over HTTP, and connections to its stream."""

    base: str
    opened: list[Sse] = field(default_factory=list)

    def connect(self, headers: dict[str, str], query: str = "",
                cookies: dict[str, str] | None = None) -> Sse:
        response = requests.get(f"{self.base}{STREAM}{query}", headers=headers, stream=True,
                                cookies=cookies, timeout=(2, 10))
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        sse = Sse(response).start()
        self.opened.append(sse)
        return sse


@pytest.fixture
def server(app, db, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """The application on a free local port, with fast stream clocks.

    The fallback read is set far out, so an event that arrives quickly came by
    the Redis nudge (the tests without Redis poll every 0.1 s instead).
    """
    monkeypatch.setitem(app.config, "STREAM_HEARTBEAT_SECONDS", 0.3)
    monkeypatch.setitem(app.config, "STREAM_POLL_SECONDS", 0.1)
    monkeypatch.setitem(app.config, "STREAM_FALLBACK_SECONDS", 60)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    live_server = Live(f"http://127.0.0.1:{http.server_port}")
    try:
        yield live_server
    finally:
        for sse in live_server.opened:
            sse.close()
        http.shutdown()
        http.server_close()
        # Each stream sees its closed connection at its next keep-alive.
        limit = time.monotonic() + WAIT
        while _stream_threads() and time.monotonic() < limit:
            time.sleep(0.05)


def _stream_threads() -> list[threading.Thread]:
    """The server's request threads still running (named after socketserver's method)."""
    return [t for t in threading.enumerate() if "process_request_thread" in t.name]


@pytest.fixture
def without_redis(app, settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Redis: nothing nudges, streams poll the table."""
    monkeypatch.setitem(app.config, "ONCALL", settings.with_(redis_url=""))


def _publish(circle_id: int, kind: str = "alert.opened", subject_id: int = 7,
             **data: Any) -> int:
    row = publish(circle_id, kind, "alert", subject_id, utcnow(), **data)
    _db.session.commit()
    return int(row.id)


# --- events arrive -----------------------------------------------------------------------


def test_a_new_event_arrives_at_once_by_the_redis_nudge(server: Live, app, world: World,
                                                        monkeypatch: pytest.MonkeyPatch):
    # Nothing but a nudge wakes this stream before it ends by itself after 2 s.
    for key in ("STREAM_HEARTBEAT_SECONDS", "STREAM_POLL_SECONDS", "STREAM_FALLBACK_SECONDS"):
        monkeypatch.setitem(app.config, key, 60)
    monkeypatch.setitem(app.config, "STREAM_MAX_SECONDS", 2)
    earlier = _publish(world.circle.id, "visit.assigned")
    sse = server.connect(world.headers["dispatcher"])
    hello = sse.next()
    assert hello == {"id": earlier, "event": "hello",
                     "data": {"last_id": earlier, "reload": False}}
    started = time.monotonic()
    event_id = _publish(world.circle.id, "alert.opened", 12, level=1, alert_kind="panic")
    event = sse.next(timeout=1.5)
    assert time.monotonic() - started < 1.5
    assert event["id"] == event_id
    assert event["event"] == "alert.opened"
    assert event["data"]["subject_type"] == "alert"
    assert event["data"]["subject_id"] == 12
    assert event["data"]["data"] == {"level": 1, "alert_kind": "panic"}
    assert event["data"]["at"]


@pytest.mark.usefixtures("without_redis")
def test_without_redis_the_stream_polls(server: Live, world: World):
    sse = server.connect(world.headers["coordinator"])
    assert sse.next()["data"] == {"last_id": 0, "reload": False}
    ids = [_publish(world.circle.id, subject_id=n) for n in (1, 2, 3)]
    assert [e["id"] for e in sse.take(3)] == ids


def test_another_circles_events_never_appear(server: Live, world: World,
                                             other_world: World):
    sse = server.connect(world.headers["admin"])
    sse.next()  # hello
    _publish(other_world.circle.id, subject_id=99)
    mine = _publish(world.circle.id, subject_id=1)
    _publish(other_world.circle.id, subject_id=98)
    assert sse.next()["id"] == mine
    assert sse.quiet(0.5) == []
    theirs = server.connect(other_world.headers["admin"])
    assert theirs.next()["event"] == "hello"
    _publish(world.circle.id, subject_id=2)
    assert theirs.quiet(0.5) == []


def test_a_session_cookie_opens_the_stream(server: Live, app, world: World):
    cookie = app.session_interface.get_signing_serializer(app).dumps(
        {"uid": world.dispatcher.id, "circle": world.circle.id, "csrf": "x"})
    sse = server.connect({}, cookies={app.config["SESSION_COOKIE_NAME"]: cookie})
    assert sse.next()["event"] == "hello"
    event_id = _publish(world.circle.id)
    assert sse.next()["id"] == event_id


# --- reconnection ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["header", "query"])
def test_reconnecting_replays_exactly_the_missed_events(server: Live, world: World, how: str):
    headers = world.headers["dispatcher"]
    sse = server.connect(headers)
    sse.next()
    seen = [_publish(world.circle.id, subject_id=n) for n in (1, 2)]
    assert [e["id"] for e in sse.take(2)] == seen
    sse.close()
    missed = [_publish(world.circle.id, subject_id=n) for n in (3, 4, 5)]
    _publish(f.make_circle().id)  # another circle's, in between
    if how == "header":
        again = server.connect({**headers, "Last-Event-ID": str(seen[-1])})
    else:
        again = server.connect(headers, f"?last_event_id={seen[-1]}")
    replayed = again.take(3)
    assert [e["id"] for e in replayed] == missed
    assert [e["data"]["subject_id"] for e in replayed] == [3, 4, 5]
    # No hello on a replay, and then new events follow.
    after = _publish(world.circle.id, subject_id=6)
    assert again.next()["id"] == after


def test_the_header_wins_over_the_query(server: Live, world: World):
    first, second = (_publish(world.circle.id, subject_id=n) for n in (1, 2))
    sse = server.connect({**world.headers["admin"], "Last-Event-ID": str(first)},
                         "?last_event_id=0")
    assert sse.next()["id"] == second


def test_too_many_missed_events_ask_for_a_reload(server: Live, world: World,
                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(live, "REPLAY_MAX", 3)
    ids = [_publish(world.circle.id, subject_id=n) for n in range(5)]
    sse = server.connect({**world.headers["admin"], "Last-Event-ID": str(ids[0])})
    assert sse.next() == {"id": ids[-1], "event": "hello",
                          "data": {"last_id": ids[-1], "reload": True}}
    assert sse.quiet(0.3) == []


@pytest.mark.usefixtures("without_redis")
def test_a_row_committed_late_is_still_sent(server: Live, world: World):
    """Ids are handed out in one order and committed in another."""
    sse = server.connect(world.headers["dispatcher"])
    sse.next()
    with _db.engine.connect() as slow:
        transaction = slow.begin()
        late = slow.execute(
            insert(StreamEvent).values(circle_id=world.circle.id, at=utcnow(),
                                       kind="visit.updated", subject_type="visit",
                                       subject_id=3, data={}).returning(StreamEvent.id)
        ).scalar_one()
        early = _publish(world.circle.id, subject_id=4)
        assert early > late
        assert sse.next()["id"] == early
        transaction.commit()
    assert sse.next()["id"] == late
    assert sse.quiet(0.5) == []  # each sent once


# --- the connection's life -----------------------------------------------------------------


def test_keep_alive_comments_and_no_connection_held(server: Live, world: World, pg_database):
    sse = server.connect(world.headers["admin"])
    sse.next()
    limit = time.monotonic() + WAIT
    while len(sse.comments) < 2 and time.monotonic() < limit:
        time.sleep(0.05)
    assert sse.comments[:2] == [": keep-alive", ": keep-alive"]
    # Between reads the stream holds no transaction open.
    _db.session.commit()
    name = pg_database.rsplit("/", 1)[-1]
    with psycopg.connect(f"{PG_SERVER}/{name}", autocommit=True) as conn:
        for _ in range(5):
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND state LIKE 'idle in transaction%%'", (name,)).fetchone()
            assert busy == (0,)
            time.sleep(0.1)


def test_the_server_ends_the_stream_after_its_lifetime(server: Live, app, world: World,
                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(app.config, "STREAM_MAX_SECONDS", 1)
    started = time.monotonic()
    sse = server.connect(world.headers["dispatcher"])
    assert sse.next()["event"] == "hello"
    assert sse.ended.wait(WAIT)
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize("change", ["deactivate", "revoke"])
def test_losing_access_ends_the_stream(server: Live, world: World, change: str):
    sse = server.connect(world.headers["dispatcher"])
    sse.next()
    if change == "deactivate":
        _db.session.execute(update(User).where(User.id == world.dispatcher.id)
                            .values(active=False))
    else:
        _db.session.execute(update(ApiToken).where(ApiToken.user_id == world.dispatcher.id)
                            .values(revoked_at=utcnow()))
    _db.session.commit()
    assert sse.ended.wait(WAIT), "the stream goes on"


# --- who may listen --------------------------------------------------------------------


def test_doctors_and_anonymous_clients_get_no_stream(client, world: World):
    response = client.get(STREAM, headers=world.headers["doctor"])
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "role_forbidden"
    response = client.get(STREAM)
    assert response.status_code == 401
    assert "error" in response.get_json()


def test_a_bad_last_event_id_is_named(client, world: World):
    response = client.get(STREAM, headers={**world.headers["admin"], "Last-Event-ID": "x"})
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"Last-Event-ID"}
    response = client.get(f"{STREAM}?last_event_id=-1", headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"last_event_id"}


def test_messages_are_one_line_of_json_each():
    text = live.message("alert.opened", {"note": "two\nlines"}, 5)
    assert text == 'id: 5\nevent: alert.opened\ndata: {"note":"two\\nlines"}\n\n'
