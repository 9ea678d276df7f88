"""A webhook receiver that checks signatures and records every delivery."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any

from oncall.notify.signing import (
    ATTEMPT_HEADER,
    IDEMPOTENCY_HEADER,
    MESSAGE_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
    webhook_secret,
)
from tests.peers.base import HOST, HttpPeer, parse_json

#: Headers a webhook delivery keeps (names as sent).
RECORDED_HEADERS = (
    IDEMPOTENCY_HEADER,
    MESSAGE_ID_HEADER,
    ATTEMPT_HEADER,
    TIMESTAMP_HEADER,
    SIGNATURE_HEADER,
    "Content-Type",
    "User-Agent",
)


@dataclass(frozen=True)
class Delivery:
    """One POST the webhook receiver got, accepted or not."""

    key: str | None
    received_monotonic: float
    received_at: datetime
    body: Any
    raw: bytes
    headers: dict[str, str]
    path: str
    #: What the receiver answered.
    status: int
    #: None when the receiver checks no signature.
    signature_ok: bool | None
    receiver_id: str
    #: The client's source port: one port for many deliveries means a kept-alive connection.
    client_port: int

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def attempt(self) -> int | None:
        raw = self.headers.get(ATTEMPT_HEADER)
        return int(raw) if raw and raw.isdigit() else None


class WebhookReceiver(HttpPeer):
    """Receives signed webhooks and records them.

    With a ``secret`` (or several, one per circle) a POST whose signature does not
    verify is answered 401 and recorded with ``signature_ok=False``. ``status``
    or ``fail_next`` make it answer a failure instead (the POST is still
    recorded, as a real receiver would have seen it). ``on_delivery`` is called
    with each record, outside the lock.
    """

    def __init__(
        self,
        secret: str | Iterable[str] | None = None,
        *,
        host: str = HOST,
        port: int = 0,
        status: int | None = None,
        max_skew: float = 300,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        super().__init__(host, port, status=status)
        if secret is None:
            self.secrets: tuple[str, ...] = ()
        elif isinstance(secret, str):
            self.secrets = (secret,)
        else:
            self.secrets = tuple(secret)
        self.max_skew = max_skew
        self.on_delivery = on_delivery
        self._deliveries: list[Delivery] = []

    @classmethod
    def for_circles(
        cls, secret_key: str, circle_ids: Iterable[int], **options: Any
    ) -> WebhookReceiver:
        """A receiver that accepts webhooks signed for any of these circles."""
        secrets = [webhook_secret(secret_key, circle_id) for circle_id in circle_ids]
        return cls(secrets, **options)

    @property
    def url(self) -> str:
        """The address to configure as a webhook."""
        return f"{self.base_url}/hook"

    def handle(
        self, method: str, path: str, headers: Message, body: bytes, client: Any = None
    ) -> tuple[int, Any]:
        if method == "GET":
            return 200, {"ok": True}
        if method != "POST":
            return 405, {"error": "method not allowed"}
        received_monotonic = time.monotonic()
        received_at = datetime.now(UTC)
        payload = parse_json(body)
        signature_ok: bool | None = None
        if self.secrets:
            signature_ok = any(
                verify(
                    secret,
                    headers.get(TIMESTAMP_HEADER),
                    body,
                    headers.get(SIGNATURE_HEADER),
                    now=received_at,
                    max_skew=self.max_skew,
                )
                for secret in self.secrets
            )
        forced = self._override()
        if forced is not None:
            status = forced
        elif signature_ok is False:
            status = 401
        elif payload is None:
            status = 400
        else:
            status = 200
        kept = {name: headers[name] for name in RECORDED_HEADERS if headers.get(name) is not None}
        with self._cond:
            receiver_id = f"rcv-{len(self._deliveries) + 1}"
            record = Delivery(
                key=headers.get(IDEMPOTENCY_HEADER),
                received_monotonic=received_monotonic,
                received_at=received_at,
                body=payload,
                raw=body,
                headers=kept,
                path=path,
                status=status,
                signature_ok=signature_ok,
                receiver_id=receiver_id,
                client_port=int(client[1]) if client else 0,
            )
            self._deliveries.append(record)
            self._cond.notify_all()
        if self.on_delivery is not None:
            self.on_delivery(record)
        self._pause()
        if 200 <= status < 300:
            return status, {"id": receiver_id}
        return status, {"error": f"answered {status}"}

    # accessors (thread-safe snapshots) ------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        """Every POST received, in order, whatever was answered."""
        with self._cond:
            return list(self._deliveries)

    def accepted(self) -> list[Delivery]:
        """The POSTs answered 2xx: what a real receiver would have acted on."""
        with self._cond:
            return [d for d in self._deliveries if d.accepted]

    def unique_keys(self) -> set[str]:
        """Idempotency keys of accepted deliveries."""
        return {d.key for d in self.accepted() if d.key is not None}

    def duplicates(self) -> dict[str, int]:
        """Keys accepted more than once, with how many times."""
        counts = Counter(d.key for d in self.accepted() if d.key is not None)
        return {key: n for key, n in counts.items() if n > 1}

    def clear(self) -> None:
        with self._cond:
            self._deliveries.clear()

    def _count(self) -> int:
        return len({d.key for d in self._deliveries if d.accepted and d.key is not None})


def _dig(data: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(data, dict):
            return None
        data = data.get(name)
    return data


def webhook_log_line(delivery: Delivery) -> dict[str, Any]:
    """What the process receiver writes per delivery: ids, timing and a few payload fields."""
    body = delivery.body
    return {
        "key": delivery.key,
        "received_at": delivery.received_at.timestamp(),
        "status": delivery.status,
        "attempt": delivery.attempt,
        "event": _dig(body, "event"),
        "alert_id": _dig(body, "alert", "id"),
        "level": _dig(body, "alert", "level"),
        "due_at": _dig(body, "alert", "due_at"),
    }
