"""Run one peer as its own process (benchmarks); see :mod:`tests.peers`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import IO, Any

from oncall.notify.signing import webhook_secret
from tests.peers.base import HOST, HttpPeer
from tests.peers.sms import SmsGatewayPeer
from tests.peers.smtp import SmtpPeer
from tests.peers.webhook import WebhookReceiver, webhook_log_line


class _JsonLines:
    """A thread-safe, line-flushed JSON-lines writer (or nothing without a path)."""

    def __init__(self, path: str | None) -> None:
        self._file: IO[str] | None = open(path, "a", buffering=1) if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    def write(self, line: dict[str, Any]) -> None:
        if self._file is None:
            return
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(text)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def main(argv: list[str] | None = None) -> int:
    """Run one peer until SIGTERM or SIGINT (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tests.peers")
    parser.add_argument("kind", choices=("webhook", "sms", "smtp"))
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", help="append one JSON line per delivery to this file")
    parser.add_argument("--secret", action="append", help="webhook secret (repeatable)")
    parser.add_argument("--secret-key", help="derive webhook secrets from the service's key")
    parser.add_argument(
        "--circle", type=int, action="append", default=[], help="circle id (with --secret-key)"
    )
    parser.add_argument("--token", default="gateway-token", help="SMS gateway bearer token")
    parser.add_argument("--status", type=int, help="answer every request with this status")
    args = parser.parse_args(argv)

    log = _JsonLines(args.log)
    peer: HttpPeer | SmtpPeer
    if args.kind == "webhook":
        secrets = list(args.secret or [])
        if args.secret_key:
            secrets += [webhook_secret(args.secret_key, circle) for circle in args.circle]
        peer = WebhookReceiver(
            secrets or None,
            host=args.host,
            port=args.port,
            status=args.status,
            on_delivery=lambda d: log.write(webhook_log_line(d)),
        )
    elif args.kind == "sms":
        peer = SmsGatewayPeer(args.token, host=args.host, port=args.port)
        peer.status = args.status
    else:
        peer = SmtpPeer(args.host, args.port, fail_code=args.status)
        peer.on_message = lambda m: log.write(
            {
                "message_id": m.message_id,
                "received_at": m.received_at.timestamp(),
                "rcpt": m.rcpt_tos,
            }
        )

    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    peer.start()
    ready: dict[str, Any] = {"ready": True, "port": peer.port}
    if isinstance(peer, HttpPeer):
        ready["url"] = peer.url
    print(json.dumps(ready), flush=True)
    try:
        done.wait()
    finally:
        peer.stop()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
