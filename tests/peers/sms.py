"""A JSON SMS gateway: ``POST /sms`` with a bearer token, answers ``{"id": "sms-<n>"}``."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any

from tests.peers.base import HOST, HttpPeer, parse_json


@dataclass(frozen=True)
class SmsRecord:
    """One request to the SMS gateway, accepted or not."""

    to: str | None
    sender: str | None
    text: str | None
    reference: str | None
    authorization: str | None
    status: int
    gateway_id: str | None
    received_monotonic: float
    received_at: datetime

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class SmsGatewayPeer(HttpPeer):
    """A JSON SMS gateway: ``POST /sms`` with a bearer token, answers ``{"id": "sms-<n>"}``."""

    def __init__(self, token: str = "gateway-token", *, host: str = HOST, port: int = 0) -> None:
        super().__init__(host, port)
        self.token = token
        self._requests: list[SmsRecord] = []
        self._sent = 0

    @property
    def url(self) -> str:
        """The address to configure as ``sms_gateway_url``."""
        return f"{self.base_url}/sms"

    def handle(
        self, method: str, path: str, headers: Message, body: bytes, client: Any = None
    ) -> tuple[int, Any]:
        if method != "POST" or path.split("?")[0] != "/sms":
            return 404, {"error": "not found"}
        data = parse_json(body)
        fields = data if isinstance(data, dict) else {}
        authorization = headers.get("Authorization")
        forced = self._override()
        if forced is not None:
            status = forced
        elif authorization != f"Bearer {self.token}":
            status = 401
        elif not isinstance(data, dict) or not data.get("to") or not data.get("text"):
            status = 400
        else:
            status = 200
        with self._cond:
            gateway_id = None
            if 200 <= status < 300:
                self._sent += 1
                gateway_id = f"sms-{self._sent}"
            self._requests.append(
                SmsRecord(
                    to=fields.get("to"),
                    sender=fields.get("from"),
                    text=fields.get("text"),
                    reference=fields.get("reference"),
                    authorization=authorization,
                    status=status,
                    gateway_id=gateway_id,
                    received_monotonic=time.monotonic(),
                    received_at=datetime.now(UTC),
                )
            )
            self._cond.notify_all()
        self._pause()
        if gateway_id is not None:
            return status, {"id": gateway_id}
        return status, {"error": f"answered {status}"}

    @property
    def requests(self) -> list[SmsRecord]:
        """Every request received, whatever was answered."""
        with self._cond:
            return list(self._requests)

    @property
    def messages(self) -> list[SmsRecord]:
        """The SMS the gateway accepted."""
        with self._cond:
            return [r for r in self._requests if r.accepted]

    def duplicates(self) -> dict[str, int]:
        """References accepted more than once, with how many times."""
        counts = Counter(r.reference for r in self.messages if r.reference is not None)
        return {ref: n for ref, n in counts.items() if n > 1}

    def _count(self) -> int:
        return len({r.reference for r in self._requests if r.accepted})
