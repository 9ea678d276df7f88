"""An SMTP server (aiosmtpd) that records the emails it accepts or refuses them on demand."""

from __future__ import annotations

import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from tests.peers.base import HOST, Recorder, free_port


@dataclass(frozen=True)
class SmtpRecord:
    """One email the SMTP peer accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    message_id: str | None
    queue_id: str
    #: The data as received (after the SMTP dot-unstuffing).
    raw: bytes
    received_monotonic: float
    received_at: datetime

    @property
    def text(self) -> str:
        """The plain-text body, decoded."""
        part = self.message.get_body(preferencelist=("plain",))
        return str(part.get_content()) if part is not None else ""


_REPLIES = {
    421: "421 4.3.2 Service not available",
    450: "450 4.2.1 Mailbox busy, try again later",
    451: "451 4.3.0 Temporary failure, try again later",
    452: "452 4.3.1 Insufficient system storage",
    550: "550 5.1.1 Mailbox unavailable",
    552: "552 5.3.4 Message too big",
    554: "554 5.7.1 Message refused",
}


def _smtp_reply(code: int) -> str:
    return _REPLIES.get(code, f"{code} Refused")


class _SmtpHandler:
    """aiosmtpd hooks: refuse as the peer is told, record what is accepted."""

    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.peer.fail_stage == "rcpt":
            code = self.peer._override()
            if code is not None:
                return _smtp_reply(code)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.peer.fail_stage == "data":
            code = self.peer._override()
            if code is not None:
                return _smtp_reply(code)
        return self.peer._record(envelope)


class _Controller(Controller):
    """aiosmtpd's controller, closing open sessions on stop.

    ``Controller.stop`` cancels the sessions' tasks but leaves their sockets to
    the garbage collector; a peer that is stopped and started many times in a
    test run must not leak them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def factory(self) -> SMTP:
        smtp = super().factory()
        self._sessions.add(smtp)
        return smtp

    def stop(self, no_assert: bool = False) -> None:
        closed = threading.Event()

        def close_sessions() -> None:
            for session in list(self._sessions):
                transport = getattr(session, "transport", None)
                if transport is not None:
                    transport.close()
            closed.set()

        if self.loop.is_running():
            self.loop.call_soon_threadsafe(close_sessions)
            closed.wait(2)
        super().stop(no_assert)


class SmtpPeer(Recorder):
    """An SMTP server (aiosmtpd) on 127.0.0.1 that records the emails it accepts.

    ``fail_code`` (451, 550...) or ``fail_next`` make it refuse, at the RCPT
    stage by default or at DATA with ``fail_stage="data"``.
    """

    def __init__(
        self,
        host: str = HOST,
        port: int = 0,
        *,
        fail_code: int | None = None,
        fail_stage: str = "rcpt",
    ) -> None:
        super().__init__()
        self.host = host
        self._port = port
        self.fail_code = fail_code
        self.fail_stage = fail_stage
        self._controller: _Controller | None = None
        self._messages: list[SmtpRecord] = []
        self.on_message: Callable[[SmtpRecord], None] | None = None

    def start(self) -> Self:
        """Listen (again) on the peer's port; the first start picks a free one."""
        if self._controller is not None:
            return self
        if not self._port:
            self._port = free_port(self.host)
        controller = _Controller(
            _SmtpHandler(self),
            hostname=self.host,
            port=self._port,
            server_hostname="peer.localhost",
            ready_timeout=5.0,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening; open sessions are cut."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def port(self) -> int:
        return self._port

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _override(self) -> int | None:
        return self._take_forced() or self.fail_code

    def _record(self, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(parsed, EmailMessage)
        with self._cond:
            queue_id = f"Q{len(self._messages) + 1:06d}"
            record = SmtpRecord(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=parsed,
                message_id=parsed["Message-ID"],
                queue_id=queue_id,
                raw=raw,
                received_monotonic=time.monotonic(),
                received_at=datetime.now(UTC),
            )
            self._messages.append(record)
            self._cond.notify_all()
        if self.on_message is not None:
            self.on_message(record)
        return f"250 2.0.0 Ok: queued as {queue_id}"

    @property
    def messages(self) -> list[SmtpRecord]:
        """Every email accepted, in order."""
        with self._cond:
            return list(self._messages)

    def duplicates(self) -> dict[str, int]:
        """Message-IDs accepted more than once, with how many times."""
        counts = Counter(m.message_id for m in self.messages if m.message_id)
        return {mid: n for mid, n in counts.items() if n > 1}

    def _count(self) -> int:
        return len({m.message_id or m.queue_id for m in self._messages})
