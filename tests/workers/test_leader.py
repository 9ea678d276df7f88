"""One active scheduler: the advisory lock is held by one process, taken over when it dies."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from config.settings import Settings
from tests.conftest import PG_SERVER
from workers.leader import APPLICATION_NAME, Leader


@pytest.fixture
def leaders(settings: Settings) -> Iterator[list[Leader]]:
    """Leaders on the test database, all released afterwards (the lock must not linger)."""
    made: list[Leader] = []
    yield made
    for leader in made:
        leader.release()


def _leader(leaders: list[Leader], settings: Settings) -> Leader:
    leader = Leader(settings.database_url)
    leaders.append(leader)
    return leader


def _terminate(settings: Settings, pid: int) -> None:
    database = settings.database_url.rsplit("/", 1)[1]
    with psycopg.connect(f"{PG_SERVER}/{database}", autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_only_one_of_two_leaders_holds_the_lock(leaders: list[Leader], settings: Settings) -> None:
    first, second = _leader(leaders, settings), _leader(leaders, settings)
    assert first.ensure() is True
    assert second.ensure() is False
    assert first.ensure() is True  # checking again keeps it
    assert second.ensure() is False
    assert first.is_leader
    assert not second.is_leader
    first.release()
    assert second.ensure() is True
    assert first.ensure() is False


def test_the_standby_takes_over_when_the_leaders_connection_is_killed(
    leaders: list[Leader], settings: Settings
) -> None:
    first, second = _leader(leaders, settings), _leader(leaders, settings)
    assert first.ensure()
    assert not second.ensure()
    assert first.backend_pid is not None
    _terminate(settings, first.backend_pid)

    limit = time.monotonic() + 5
    while not second.ensure():
        assert time.monotonic() < limit, "the standby never took the lock over"
        time.sleep(0.1)
    # The old leader notices its connection is gone and never claims to lead again.
    assert first.ensure() is False
    assert not first.is_leader


def test_a_leader_whose_connection_died_takes_the_lock_again(
    leaders: list[Leader], settings: Settings
) -> None:
    leader = _leader(leaders, settings)
    assert leader.ensure()
    old_pid = leader.backend_pid
    assert old_pid is not None
    _terminate(settings, old_pid)
    limit = time.monotonic() + 5
    while not leader.ensure():
        assert time.monotonic() < limit, "the leader never got its lock back"
        time.sleep(0.1)
    assert leader.backend_pid not in (None, old_pid)


def test_the_lock_connection_is_its_own(leaders: list[Leader], settings: Settings) -> None:
    leader = _leader(leaders, settings)
    assert leader.ensure()
    database = settings.database_url.rsplit("/", 1)[1]
    with psycopg.connect(f"{PG_SERVER}/{database}", autocommit=True) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.pid = %s",
            (leader.backend_pid,),
        ).fetchone()
    assert row == (APPLICATION_NAME,)


def test_a_database_that_cannot_be_reached_means_standby() -> None:
    leader = Leader("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    try:
        assert leader.ensure() is False
    finally:
        leader.release()


def test_sqlite_needs_no_lock(tmp_path: object) -> None:
    leader = Leader(f"sqlite:///{tmp_path}/x.sqlite3")
    assert leader.ensure() is True
    assert not leader.uses_lock
    leader.release()
