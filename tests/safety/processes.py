"""Start, watch and stop real ``oncall`` processes (Celery workers, schedulers).

The end-to-end and fault tests run the service as it runs in production: each
worker and scheduler is its own process started with ``oncall worker`` or
``oncall scheduler`` and an environment of ``ONCALL_*`` variables, writing its
log to a file. Each process gets its own process group, so that stopping or
killing it also ends the children a prefork worker forked.

Typical use::

    env = oncall_env(settings, BROKER_URL, ONCALL_SCHEDULER_SWEEP_SECONDS="1")
    with ProcessSet(tmp_path, env) as procs:
        worker = procs.worker()
        scheduler = procs.scheduler()
        ...
        worker.kill()                      # kill -9, children included
        wait_until(lambda: ..., 10, "the alert never reached the police",
                   watch=[scheduler])

Waiting is always :func:`wait_until` (a condition polled until a deadline) or
:func:`hold_for` (a condition that must stay true for a while), never a bare
sleep.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

import redis

from config.settings import Settings

#: The Redis database the process tests use as broker (flushed before and after).
BROKER_URL = "redis://127.0.0.1:6379/13"

#: Log lines that say a process is ready.
WORKER_READY = " ready."
SCHEDULER_LEADER = "now the active scheduler"
SCHEDULER_STANDBY = "is standby"

T = TypeVar("T")

Message = str | Callable[[], str]


# --------------------------------------------------------------------------- waiting


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    message: Message,
    *,
    interval: float = 0.05,
    watch: Iterable[OncallProcess] = (),
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Fails with ``message`` (a string or a function building one) after
    ``timeout`` seconds, and at once if a process in ``watch`` exited; the
    failure shows the end of the watched processes' logs.
    """
    watched = list(watch)
    limit = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for proc in watched:
            if not proc.alive():
                raise AssertionError(
                    f"{_text(message)}: {proc.name} exited with {proc.returncode}\n"
                    + describe(watched)
                )
        if time.monotonic() >= limit:
            raise AssertionError(f"{_text(message)} (after {timeout:g} s)\n" + describe(watched))
        time.sleep(interval)


def hold_for(
    seconds: float,
    condition: Callable[[], bool],
    message: Message,
    *,
    interval: float = 0.1,
    watch: Iterable[OncallProcess] = (),
) -> None:
    """Check that ``condition`` stays true for ``seconds`` (something must NOT happen)."""
    watched = list(watch)
    limit = time.monotonic() + seconds
    while True:
        if not condition():
            raise AssertionError(_text(message) + "\n" + describe(watched))
        for proc in watched:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited with {proc.returncode}\n"
                                     + describe(watched))
        if time.monotonic() >= limit:
            return
        time.sleep(interval)


def _text(message: Message) -> str:
    return message() if callable(message) else message


def describe(processes: Iterable[OncallProcess], chars: int = 3000) -> str:
    """The end of each process's log, for a failure message."""
    return "\n".join(
        f"----- {p.name} (pid {p.pid}, {'running' if p.alive() else 'exited'}) -----\n"
        + p.tail(chars)
        for p in processes
    )


# --------------------------------------------------------------------------- environment


def oncall_command() -> list[str]:
    """The installed ``oncall`` script beside this interpreter, or the module."""
    script = Path(sys.executable).with_name("oncall")
    return [str(script)] if script.exists() else [sys.executable, "-m", "oncall.cli"]


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any ONCALL_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCALL_")}
    env.update(values)
    return env


def oncall_env(
    settings: Settings, broker_url: str = BROKER_URL, **overrides: str
) -> dict[str, str]:
    """The environment of a process of the test deployment.

    Same database and secret key as the test process (so webhook signatures
    verify with the secrets the tests compute), ``broker_url`` as broker and
    Redis. ``overrides`` are ``ONCALL_*`` variables (or any other).
    """
    values = {
        "ONCALL_PROFILE": "test",
        "ONCALL_DATABASE_URL": settings.database_url,
        "ONCALL_BROKER_URL": broker_url,
        "ONCALL_REDIS_URL": broker_url,
        "ONCALL_SECRET_KEY": settings.secret_key,
        "ONCALL_INSTANCE_PATH": settings.instance_path,
        "ONCALL_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    values.update(overrides)
    return clean_env(**values)


def flush_redis(url: str = BROKER_URL) -> None:
    """Empty the Redis database of ``url`` (the broker of the process tests)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


# --------------------------------------------------------------------------- processes


class OncallProcess:
    """One started process: its ``Popen`` handle, its log file, and ways to end it."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str],
                 log_path: Path) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.started = time.monotonic()
        self.popen: subprocess.Popen[bytes] = subprocess.Popen(
            self.args,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: children end with it
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        """Everything the process wrote so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]

    def log_count(self, text: str) -> int:
        """How many times ``text`` appears in the log."""
        return self.log().count(text)

    def wait_for_log(self, text: str, timeout: float = 60, *, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the log (fails if the process exits)."""
        wait_until(lambda: self.log_count(text) >= count, timeout,
                   f"{self.name} never logged {text!r}", interval=0.05, watch=[self])

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the main process only."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signum)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """``kill -9`` the process and every child in its group, and reap it."""
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int | None:
        """Ask the process to stop (SIGTERM), then kill what is left after ``timeout``.

        A worker finishes its running tasks first (Celery's warm shutdown).
        Leftover children of the group are killed in any case. Returns the exit
        status (None if it could not be reaped).
        """
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._log.flush()
        return self.popen.poll()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._log.close()


class ProcessSet:
    """The processes of one test deployment; every one is stopped on exit."""

    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        self.processes: list[OncallProcess] = []
        self._numbers = itertools.count(1)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None
              ) -> OncallProcess:
        """Start ``oncall <args>`` with the set's environment updated by ``env``."""
        full_env = {**self.env, **(env or {})}
        log_path = self.log_dir / f"{name}-{next(self._numbers)}.log"
        proc = OncallProcess(name, [*oncall_command(), *args], full_env, log_path)
        self.processes.append(proc)
        return proc

    def worker(
        self,
        name: str = "worker",
        *,
        pool: str = "prefork",
        concurrency: int = 2,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        wait_ready: bool = True,
        timeout: float = 60,
    ) -> OncallProcess:
        """A Celery worker (``oncall worker``) on the critical and default queues."""
        args = ["worker", "--pool", pool, "--concurrency", str(concurrency),
                "--hostname", f"{name}-{os.getpid()}@%h", "--without-gossip",
                "--without-mingle", *extra_args]
        proc = self.start(name, args, env)
        if wait_ready:
            proc.wait_for_log(WORKER_READY, timeout)
        return proc

    def scheduler(
        self,
        name: str = "scheduler",
        *,
        env: Mapping[str, str] | None = None,
        wait_for: str | None = SCHEDULER_LEADER,
        timeout: float = 60,
    ) -> OncallProcess:
        """A scheduler process (``oncall scheduler``); by default wait until it leads.

        ``wait_for=SCHEDULER_STANDBY`` waits for a standby, ``None`` does not wait.
        """
        proc = self.start(name, ["scheduler"], env)
        if wait_for:
            proc.wait_for_log(wait_for, timeout)
        return proc

    def alive(self) -> list[OncallProcess]:
        return [p for p in self.processes if p.alive()]

    def describe(self, chars: int = 3000) -> str:
        return describe(self.processes, chars)

    def stop_all(self, timeout: float = 30) -> None:
        """Stop every process started here (in reverse order) and close their logs."""
        for proc in reversed(self.processes):
            try:
                proc.stop(timeout)
            finally:
                proc.close()
