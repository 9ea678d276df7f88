"""Signed JSON webhooks, and the plain HTTP exchange the SMS gateway reuses.

A webhook is one POST of the message's payload (plus its ``message_id``) as
compact JSON with sorted keys, signed with the circle's webhook secret (see
:mod:`oncall.notify.signing`). The relay sends from a thread pool, so each thread
keeps its own keep-alive session.

Nothing here retries or follows redirects: the relay owns retries (with backoff
and a record of each attempt), and a redirect would send a signed message to an
address nobody configured. How an answer is classified:

* 2xx: delivered; the receipt is ``HTTP <status>`` plus the receiver's ``id``.
* 408, 429, 5xx, timeouts, refused or broken connections: retry later.
* any other status (other 4xx, 3xx): permanent, retrying cannot help.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from oncall.core.clock import utcnow
from oncall.notify.channels.base import DeliveryFailed, Outgoing
from oncall.notify.signing import (
    ATTEMPT_HEADER,
    IDEMPOTENCY_HEADER,
    MESSAGE_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    webhook_secret,
)

logger = logging.getLogger(__name__)

USER_AGENT = "oncall-notify/1"
#: Statuses below 500 that still mean "try again later".
RETRYABLE_STATUSES = frozenset({408, 429})
#: The most of an answer we read; receipts only need a short id.
MAX_ANSWER_BYTES = 64 * 1024
#: Longest receiver id kept in a receipt.
MAX_RECEIPT_ID = 64


@dataclass(frozen=True)
class HttpAnswer:
    """A 2xx answer: its status and the start of its body."""

    status: int
    content: bytes

    def answer_id(self) -> str | None:
        """The ``id`` of a JSON object answer, shortened and made printable, if any."""
        try:
            data = json.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        value = data.get("id")
        if value is None or isinstance(value, bool) or not isinstance(value, str | int):
            return None
        text = "".join(ch for ch in str(value) if ch.isprintable())
        return text[:MAX_RECEIPT_ID] or None

    def receipt(self) -> str:
        """``HTTP 200`` or ``HTTP 200 id <receiver id>``."""
        found = self.answer_id()
        return f"HTTP {self.status}" + (f" id {found}" if found else "")


def check_http_url(url: str) -> None:
    """Refuse anything but an absolute http(s) URL, permanently: retrying cannot fix it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise DeliveryFailed("address is not a valid URL", permanent=True) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise DeliveryFailed("address is not an http(s) URL", permanent=True)


def status_failure(status: int) -> DeliveryFailed:
    """The failure a non-2xx status stands for: retryable for 408, 429 and 5xx."""
    if status in RETRYABLE_STATUSES or status >= 500:
        return DeliveryFailed(f"HTTP {status}")
    if 300 <= status < 400:
        return DeliveryFailed(f"HTTP {status}: redirects are not followed", permanent=True)
    return DeliveryFailed(f"HTTP {status}", permanent=True)


def _reason(exc: BaseException) -> str:
    """The root cause of a connection error in a few words (``connection refused``).

    requests wraps the socket error several layers deep; the innermost operating
    system error says the most. It never contains the message's content.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    found: str | None = None
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        strerror = getattr(current, "strerror", None)
        if isinstance(strerror, str) and strerror and getattr(current, "errno", None):
            found = strerror
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__]
        nested.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(item for item in nested if isinstance(item, BaseException))
    if found:
        return found.lower()[:100]
    return type(exc).__name__


class JsonPoster:
    """POSTs bodies over keep-alive connections: one session per thread, no retries.

    ``requests.Session`` is not safe to share between threads, and the relay sends
    from a pool of them; each thread gets its own session and connection pool.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        """This thread's session, created on first use."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            session.max_redirects = 0
            # total=0: a failed connection or a lost answer is reported, not retried;
            # the relay decides when to try again and records the attempt.
            adapter = HTTPAdapter(
                pool_connections=32,
                pool_maxsize=4,
                max_retries=Retry(total=0, read=False, redirect=False, raise_on_status=False),
            )
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """Send ``body`` to ``url``; a 2xx answer is returned, anything else raises.

        Raises :class:`DeliveryFailed`, retryable or permanent as the module
        docstring explains.
        """
        check_http_url(url)
        started = time.monotonic()
        try:
            response = self._session().post(
                url,
                data=body,
                headers=dict(headers),
                timeout=(self.timeout, self.timeout),
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout:
            raise DeliveryFailed(f"timeout after {self.timeout:g}s") from None
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ):
            raise DeliveryFailed("address is not a valid URL", permanent=True) from None
        except requests.ConnectionError as exc:
            raise DeliveryFailed(f"connection failed: {_reason(exc)}") from None
        except requests.RequestException as exc:
            raise DeliveryFailed(f"request failed: {type(exc).__name__}") from None
        with response:
            status = int(response.status_code)
            content = self._read(response, started + self.timeout)
        if 200 <= status < 300:
            return HttpAnswer(status, content)
        raise status_failure(status)

    @staticmethod
    def _read(response: Any, deadline: float) -> bytes:
        """Up to :data:`MAX_ANSWER_BYTES` of the answer, read before ``deadline``.

        The status line decides the outcome; a body cut short only loses the
        receiver's id, so read errors are not failures. Reading the whole (short)
        answer lets the connection go back to the pool for the next message.
        """
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(8192):
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_ANSWER_BYTES or time.monotonic() > deadline:
                    break
        except (requests.RequestException, OSError):
            logger.debug("answer body unreadable; keeping the status only")
        return b"".join(chunks)[:MAX_ANSWER_BYTES]

    def close(self) -> None:
        """Close every thread's session (their pooled connections)."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()


def webhook_body(message: Outgoing) -> bytes:
    """The JSON the receiver gets: the payload plus ``message_id``, compact, sorted keys."""
    document = {**message.payload, "message_id": message.message_id}
    try:
        text = json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        raise DeliveryFailed("payload is not JSON serialisable", permanent=True) from None
    return text.encode()


class WebhookChannel:
    """Delivers a message as a signed JSON POST to the address (an http(s) URL)."""

    def __init__(
        self,
        secret_key: str,
        timeout: float,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.secret_key = secret_key
        self.clock = clock
        self.poster = JsonPoster(timeout)

    def headers(self, message: Outgoing, body: bytes) -> dict[str, str]:
        """Content type, signature and idempotency headers for ``body``."""
        timestamp = int(self.clock().timestamp())
        secret = webhook_secret(self.secret_key, message.circle_id)
        return {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            IDEMPOTENCY_HEADER: str(message.message_id),
            MESSAGE_ID_HEADER: str(message.message_id),
            ATTEMPT_HEADER: str(message.attempt),
        }

    def send(self, message: Outgoing) -> str:
        """POST the message; the receipt is ``HTTP <status>`` and the receiver's id."""
        url = message.address.strip()
        check_http_url(url)
        body = webhook_body(message)
        answer = self.poster.post(url, body, self.headers(message, body))
        return answer.receipt()

    def close(self) -> None:
        """Drop pooled connections (tests and shutdown)."""
        self.poster.close()
