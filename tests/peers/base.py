"""The HTTP base of the peers: a threading server on a background thread that can be
stopped and started again on the same port, and the waiting every peer shares."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

HOST = "127.0.0.1"

Condition = int | Callable[[], bool]


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Recorder:
    """What every peer shares: a condition to record under and ``wait_for``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._forced: list[int] = []

    def _count(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def wait_for(self, condition: Condition, timeout: float = 5.0) -> bool:
        """Wait until ``condition`` holds; False if ``timeout`` seconds pass first.

        An int ``n`` means "at least n distinct messages accepted" (see each
        peer's ``_count``); a callable is any predicate, checked on every new
        record and at least every 20 ms (so it may watch other state too).
        """
        check: Callable[[], bool]
        if isinstance(condition, int):
            wanted = condition
            check = lambda: self._count() >= wanted  # noqa: E731
        else:
            check = condition
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if check():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.02))

    def fail_next(self, count: int, code: int) -> None:
        """Answer ``code`` to the next ``count`` requests, then behave normally again."""
        with self._cond:
            self._forced.extend([code] * count)

    def _take_forced(self) -> int | None:
        with self._cond:
            return self._forced.pop(0) if self._forced else None


# --------------------------------------------------------------------------- HTTP


class PeerServer(ThreadingHTTPServer):
    """A threading HTTP server that can cut its open keep-alive connections on stop."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], peer: HttpPeer) -> None:
        self.peer = peer
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup ``HTTPServer`` does (slow on some hosts)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections cut by ``stop()`` or by the client are expected; stay quiet."""

    def cut_connections(self) -> None:
        """Close every open connection, so pooled keep-alive clients see the peer gone."""
        with self._open_lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PeerServer
    #: An idle keep-alive connection is closed after this many seconds.
    timeout = 60

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and
        # delayed ACKs add tens of milliseconds to each answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: peers run inside tests and benchmarks."""

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, answer = self.server.peer.handle(
            self.command, self.path, self.headers, body, self.client_address
        )
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class HttpPeer(Recorder):
    """An HTTP server on a background thread; stop and start it again on the same port."""

    def __init__(self, host: str = HOST, port: int = 0, *, status: int | None = None) -> None:
        super().__init__()
        self.host = host
        self._port = port
        #: When set, every request is answered with this status (e.g. 503).
        self.status = status
        #: Seconds to wait before answering (after recording), to make clients time out.
        self.delay = 0.0
        self._server: PeerServer | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    # life cycle --------------------------------------------------------------

    def start(self) -> Self:
        """Listen (again) on the peer's port; the first start picks a free one."""
        if self._server is not None:
            return self
        server = PeerServer((self.host, self._port), self)
        self._port = int(server.server_address[1])
        self._wake.clear()
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self._port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections: clients now get "connection refused"."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        self._wake.set()
        server.shutdown()
        server.server_close()
        server.cut_connections()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def url(self) -> str:
        """The address a client is configured with."""
        return self.base_url

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # requests ----------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: Message, body: bytes, client: Any = None
    ) -> tuple[int, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _override(self) -> int | None:
        """A forced status for this request: ``fail_next`` first, then ``status``."""
        return self._take_forced() or self.status

    def _pause(self) -> None:
        """Hold the answer for ``delay`` seconds; ``stop()`` ends the wait early."""
        if self.delay > 0:
            self._wake.wait(self.delay)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
