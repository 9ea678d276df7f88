"""Email over SMTP: one session per message, plain text, a stable Message-ID.

The connection is plain SMTP, SMTP upgraded with STARTTLS (``smtp_starttls``,
usually port 587) or implicit TLS (``smtp_ssl``, usually port 465), with a login
when a user name is set. The ``Message-ID`` is derived from the outbox id, so a
message sent twice (a retry after a lost answer) carries the same id and mail
clients and servers can drop the copy.

Classification: the server refusing the recipient or the message with a 5xx
reply is permanent; 4xx replies (greylisting, a full queue), timeouts and
connection errors are retried. So is a refused login, STARTTLS or sender
address: those are the service's settings, not the message, and once they are
fixed the waiting messages go out. The receipt is the server's reply to the message
data, which usually names its queue id.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from config.settings import Settings
from oncall.notify.channels.base import DeliveryFailed, Outgoing
from oncall.notify.signing import MESSAGE_ID_HEADER

logger = logging.getLogger(__name__)


def _domain(address: str) -> str:
    """The domain of a sender address (``Oncall <oncall@example.org>`` gives example.org)."""
    _, bare = parseaddr(address)
    domain = bare.rpartition("@")[2].strip()
    return domain if domain and domain.isascii() else "localhost"


def message_id_header(message_id: int, sender: str) -> str:
    """The ``Message-ID`` of a notification: the same for every attempt of one message."""
    return f"<oncall-{message_id}@{_domain(sender)}>"


def _reply_text(code: int, reply: bytes | str) -> str:
    """An SMTP reply on one line, at most 300 characters."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(f"{code} {text}".split())[:300]


def _failure(code: int, reply: bytes | str, what: str) -> DeliveryFailed:
    """A refusal: permanent for 5xx, retryable for anything else (4xx)."""
    return DeliveryFailed(f"{what}: {_reply_text(code, reply)}", permanent=500 <= code < 600)


class EmailChannel:
    """Sends a plain-text email to the address through the configured SMTP server."""

    def __init__(self, settings: Settings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username
        self.password = settings.smtp_password
        self.starttls = settings.smtp_starttls
        self.use_ssl = settings.smtp_ssl
        self.sender = settings.smtp_from
        self.timeout = settings.delivery_timeout_seconds

    def build(self, message: Outgoing) -> EmailMessage:
        """The email for ``message``; a malformed address is a permanent failure."""
        to = message.address.strip()
        _, bare = parseaddr(to)
        if not bare or "@" not in bare or not bare.isascii() or any(c in to for c in "\r\n"):
            raise DeliveryFailed("address is not a usable email address", permanent=True)
        email = EmailMessage()
        try:
            email["From"] = self.sender
            email["To"] = to
            email["Subject"] = " ".join(message.subject.split())
            email["Date"] = formatdate(usegmt=True)
            email["Message-ID"] = message_id_header(message.message_id, self.sender)
            email[MESSAGE_ID_HEADER] = str(message.message_id)
        except (ValueError, TypeError):
            raise DeliveryFailed(
                "address or subject cannot be put in a header", permanent=True
            ) from None
        # Quoted-printable keeps accented names readable through servers without 8BITMIME.
        email.set_content(message.body, cte=None if message.body.isascii() else "quoted-printable")
        return email

    def _connect(self) -> smtplib.SMTP:
        """An open, greeted (and if configured, encrypted and logged-in) SMTP session."""
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.starttls and not self.use_ssl:
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _transfer(self, smtp: smtplib.SMTP, email: EmailMessage) -> str:
        """MAIL, RCPT and DATA; the reply to DATA is the receipt."""
        _, sender = parseaddr(self.sender)
        _, recipient = parseaddr(str(email["To"]))
        code, reply = smtp.mail(sender)
        if code != 250:
            # The sender address is configuration, not this message: always retry.
            raise DeliveryFailed(f"sender refused: {_reply_text(code, reply)}")
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            raise _failure(code, reply, "recipient refused")
        # CRLF line ends: smtplib sends bytes as given, and servers refuse bare LF.
        code, reply = smtp.data(email.as_bytes(policy=policy.SMTP))
        if code != 250:  # data() raises only when DATA itself is refused, not the message
            raise _failure(code, reply, "message refused")
        return _reply_text(code, reply)

    def send(self, message: Outgoing) -> str:
        """Deliver one email; the receipt is the server's answer to the data."""
        email = self.build(message)
        try:
            smtp = self._connect()
        except smtplib.SMTPResponseException as exc:
            # A refused greeting, STARTTLS or login is our configuration, not this
            # message: retry, so that fixing the settings lets the queue drain.
            raise DeliveryFailed(
                f"server refused the session: {_reply_text(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"cannot reach the mail server: {_describe(exc)}") from None
        try:
            receipt = self._transfer(smtp, email)
        except smtplib.SMTPResponseException as exc:
            raise _failure(exc.smtp_code, exc.smtp_error, "message refused") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"mail server lost: {_describe(exc)}") from None
        finally:
            _quit_quietly(smtp)
        return receipt


def _describe(exc: BaseException) -> str:
    """A few words on a network failure, never the message's content."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, smtplib.SMTPException) and str(exc):
        # smtplib's own messages ("Connection unexpectedly closed: timed out",
        # "STARTTLS extension not supported by server.") name no content.
        return " ".join(str(exc).split()).lower()[:100]
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror.lower()[:100]
    return type(exc).__name__


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    """End the session; the message is already accepted or refused, so errors do not matter.

    ``SMTP.__exit__`` would raise on an odd reply to QUIT, which would turn a
    delivered message into a retry and a duplicate email.
    """
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        logger.debug("SMTP QUIT failed after the transfer; ignored")
    finally:
        smtp.close()
