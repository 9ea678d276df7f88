"""Notification channels use cases: where a user or a police contact is told.

A channel is an email address, an SMS number or a webhook URL of one owner: a
user of the circle or one of its police contacts. An admin manages every
channel of the circle; any other user manages their own (a doctor registers
their phone's webhook or SMS number). Channels are never removed, because past
outbox messages refer to them: "deleting" one deactivates it.

Each public function is one transaction: everything is validated first, then
written and committed once. Addresses never go into logs or timelines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from oncall.accounts.checks import clean_text, normalise_email, reject_unknown, valid_email
from oncall.accounts.models import User
from oncall.accounts.services import MAX_ID, require_admin
from oncall.calls.numbers import InvalidNumber, normalise_number
from oncall.circles.models import Circle, PoliceContact
from oncall.circles.services import _valid_webhook
from oncall.core.paging import DEFAULT_LIMIT, check_page, envelope, page_of
from oncall.core.tenancy import get_in_circle, scoped
from oncall.core.timeline import record
from oncall.errors import Conflict, Forbidden, NotFound, Validator
from oncall.extensions import db
from oncall.notify import signing
from oncall.notify.models import CHANNEL_KINDS, NotificationChannel

logger = logging.getLogger(__name__)

#: Active channels one person may have.
MAX_ACTIVE_PER_OWNER = 10
#: Channels one person may have in all, inactive ones included (they are kept for history).
MAX_TOTAL_PER_OWNER = 50
ADDRESS_MAX = 500
LABEL_MAX = 80

_CREATE_FIELDS = ("kind", "address", "label", "active", "user_id", "police_contact_id")
_UPDATE_FIELDS = ("address", "label", "active")


@dataclass(frozen=True)
class Owner:
    """Who a channel tells: a user or a police contact of the circle."""

    user_id: int | None = None
    police_contact_id: int | None = None

    @property
    def field(self) -> str:
        """The input field that names this owner."""
        return "user_id" if self.user_id is not None else "police_contact_id"

    def where(self) -> Any:
        """The condition selecting this owner's channels."""
        if self.user_id is not None:
            return NotificationChannel.user_id == self.user_id
        return NotificationChannel.police_contact_id == self.police_contact_id

    def lock(self, circle_id: int) -> bool:
        """Lock the owner's row (see :func:`_lock_owner`); False when not of the circle."""
        if self.user_id is not None:
            return _lock_owner(User, self.user_id, circle_id)
        return _lock_owner(PoliceContact, self.police_contact_id or 0, circle_id)

    def subject(self, circle_id: int) -> tuple[str, int]:
        """The timeline subject of a change: the user, or the circle for a police contact."""
        if self.user_id is not None:
            return "user", self.user_id
        return "circle", circle_id


def _owner_of(channel: NotificationChannel) -> Owner:
    return Owner(user_id=channel.user_id, police_contact_id=channel.police_contact_id)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


# --- addresses -------------------------------------------------------------------------


def normalise_address(kind: str, raw: Any, country: str) -> str:
    """The stored form of a channel's address, or ValueError saying what is wrong.

    Email addresses are trimmed and lower-cased, SMS numbers become E.164 (read
    in the circle's country), webhooks must be https URLs (http only to this
    machine, for development).
    """
    text = clean_text(raw)
    if text is None:
        raise ValueError("Must not be empty.")
    if kind == "email":
        email = normalise_email(text)
        if not valid_email(email):
            raise ValueError("Not a valid email address.")
        return email
    if kind == "sms":
        try:
            return normalise_number(text, country)
        except InvalidNumber as exc:
            raise ValueError(f"Not a valid phone number: it {exc.reason}.") from None
    if len(text) > ADDRESS_MAX or not _valid_webhook(text):
        raise ValueError(
            f"Must be an https URL (plain http only to localhost), "
            f"at most {ADDRESS_MAX} characters."
        )
    return text


def _label(v: Validator, data: Mapping[str, Any]) -> str | None:
    label = clean_text(data.get("label"))
    if label is not None and len(label) > LABEL_MAX:
        v.add("label", f"Longer than maximum length {LABEL_MAX}.")
        return None
    return label


def _active(v: Validator, data: Mapping[str, Any]) -> bool | None:
    if "active" not in data:
        return None
    value = data["active"]
    return value if v.check(isinstance(value, bool), "active", "Not a valid boolean.") else None


# --- owners ----------------------------------------------------------------------------


def _resolve_owner(actor: User, v: Validator, data: Mapping[str, Any]) -> Owner | None:
    """The owner named by the input (the actor when none is named), locked for the
    limit checks; None with the reason in ``v`` when it is not one of the circle's.

    Anyone but an admin may name only themselves (403 otherwise).
    """
    user_id = data.get("user_id")
    contact_id = data.get("police_contact_id")
    if user_id is not None and contact_id is not None:
        reason = "Give either user_id or police_contact_id, not both."
        v.add("user_id", reason)
        v.add("police_contact_id", reason)
        return None
    if actor.role != "admin" and (
        contact_id is not None or (user_id is not None and user_id != actor.id)
    ):
        raise Forbidden("You may only add channels of your own.", code="not_your_channel")
    if contact_id is not None:
        if _is_id(contact_id) and _lock_owner(PoliceContact, contact_id, actor.circle_id):
            return Owner(police_contact_id=contact_id)
        v.add("police_contact_id", "No such police contact in this circle.")
        return None
    owner_id = actor.id if user_id is None else user_id
    if _is_id(owner_id) and _lock_owner(User, owner_id, actor.circle_id):
        return Owner(user_id=owner_id)
    v.add("user_id", "No such user in this circle.")
    return None


def _lock_owner(model: Any, row_id: int, circle_id: int) -> bool:
    """Lock the owner's row (``FOR NO KEY UPDATE``) so that two requests adding channels
    for the same person count one after the other; False when it is not of the circle.

    The lock does not block the inserts that merely reference the row.
    """
    found = db.session.scalars(
        select(model.id)
        .where(model.id == row_id, model.circle_id == circle_id)
        .with_for_update(key_share=True)
    ).first()
    return found is not None


def _count(owner: Owner, circle_id: int, *, active_only: bool, excluding: int | None) -> int:
    stmt = select(func.count(NotificationChannel.id)).where(
        NotificationChannel.circle_id == circle_id, owner.where()
    )
    if active_only:
        stmt = stmt.where(NotificationChannel.active.is_(True))
    if excluding is not None:
        stmt = stmt.where(NotificationChannel.id != excluding)
    return int(db.session.scalar(stmt) or 0)


def _check_total(owner: Owner, circle_id: int) -> None:
    """Refuse (409) a new channel past the total per person, inactive ones included."""
    if _count(owner, circle_id, active_only=False, excluding=None) >= MAX_TOTAL_PER_OWNER:
        raise Conflict(
            f"At most {MAX_TOTAL_PER_OWNER} channels per person, inactive ones included; "
            "change an inactive channel instead.",
            code="too_many_channels",
        )


def _check_active_room(owner: Owner, circle_id: int, excluding: int | None) -> None:
    """Refuse (409) an eleventh active channel for one person."""
    if _count(owner, circle_id, active_only=True, excluding=excluding) >= MAX_ACTIVE_PER_OWNER:
        raise Conflict(
            f"At most {MAX_ACTIVE_PER_OWNER} active channels per person; "
            "deactivate one first.",
            code="too_many_channels",
        )


def _duplicate(owner: Owner, circle_id: int, kind: str, address: str,
               excluding: int | None) -> bool:
    """True when the person already has this address as another active channel."""
    stmt = select(NotificationChannel.id).where(
        NotificationChannel.circle_id == circle_id,
        owner.where(),
        NotificationChannel.kind == kind,
        NotificationChannel.address == address,
        NotificationChannel.active.is_(True),
    )
    if excluding is not None:
        stmt = stmt.where(NotificationChannel.id != excluding)
    return db.session.scalars(stmt).first() is not None


_DUPLICATE = "This person already has this address as an active channel."


def _country(circle_id: int) -> str:
    country: str = db.session.scalars(select(Circle.country).where(Circle.id == circle_id)).one()
    return country


# --- use cases -------------------------------------------------------------------------


def list_channels(
    actor: User,
    user_id: int | None = None,
    police_contact_id: int | None = None,
    kind: str | None = None,
    active: bool | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of channels, oldest first: an admin's of the whole circle (optionally one
    person's), anyone else's of their own only (403 when they ask for someone else's)."""
    check_page(limit, offset)
    stmt = scoped(NotificationChannel, actor.circle_id)
    if actor.role != "admin":
        if police_contact_id is not None or (user_id is not None and user_id != actor.id):
            raise Forbidden("You may only see channels of your own.", code="not_your_channel")
        user_id = actor.id
    if user_id is not None:
        get_in_circle(User, user_id, actor.circle_id, what="user")
        stmt = stmt.where(NotificationChannel.user_id == user_id)
    if police_contact_id is not None:
        get_in_circle(PoliceContact, police_contact_id, actor.circle_id, what="police_contact")
        stmt = stmt.where(NotificationChannel.police_contact_id == police_contact_id)
    if kind is not None:
        stmt = stmt.where(NotificationChannel.kind == kind)
    if active is not None:
        stmt = stmt.where(NotificationChannel.active.is_(active))
    stmt = stmt.order_by(NotificationChannel.id)
    return envelope(list(db.session.scalars(page_of(stmt, limit, offset))), limit, offset)


def create_channel(actor: User, data: Mapping[str, Any], now: datetime) -> NotificationChannel:
    """A new channel for the actor, or (admin) for anyone of the circle; 422 naming each
    bad field, 409 past the per-person limit."""
    v = Validator()
    reject_unknown(v, data, _CREATE_FIELDS)
    owner = _resolve_owner(actor, v, data)
    kind = data.get("kind")
    address: str | None = None
    if v.check(kind in CHANNEL_KINDS, "kind", f"Must be one of: {', '.join(CHANNEL_KINDS)}."):
        try:
            address = normalise_address(str(kind), data.get("address"), _country(actor.circle_id))
        except ValueError as exc:
            v.add("address", str(exc))
    label = _label(v, data)
    active = _active(v, data)
    v.raise_if_any()
    assert owner is not None
    assert address is not None
    active = True if active is None else active
    _check_total(owner, actor.circle_id)
    if active:
        if _duplicate(owner, actor.circle_id, str(kind), address, None):
            v.add("address", _DUPLICATE)
            v.raise_if_any()
        _check_active_room(owner, actor.circle_id, None)
    channel = NotificationChannel(
        circle_id=actor.circle_id,
        user_id=owner.user_id,
        police_contact_id=owner.police_contact_id,
        kind=str(kind),
        address=address,
        label=label,
        active=active,
        key_version=1,
        created_at=now,
        updated_at=now,
    )
    db.session.add(channel)
    db.session.flush()
    _record(actor, owner, channel, "notification_channel.created", now)
    db.session.commit()
    logger.info("channel %s (%s) added for %s %s by user %s", channel.id, channel.kind,
                owner.field, owner.user_id or owner.police_contact_id, actor.id)
    return channel


def _visible(actor: User, channel_id: int, *, lock: bool) -> NotificationChannel:
    """A channel the actor may manage: any of the circle for an admin, else their own.

    Anything else is "not found", like another circle's channel.
    """
    channel = get_in_circle(NotificationChannel, channel_id, actor.circle_id,
                            what="notification_channel", lock=lock)
    if actor.role != "admin" and channel.user_id != actor.id:
        raise NotFound(f"No notification_channel {channel_id}.",
                       code="notification_channel_not_found")
    return channel


def update_channel(actor: User, channel_id: int, data: Mapping[str, Any],
                   now: datetime) -> NotificationChannel:
    """Change a channel's address, label or active flag (its kind and owner stay)."""
    channel = _visible(actor, channel_id, lock=True)
    owner = _owner_of(channel)
    v = Validator()
    reject_unknown(v, data, _UPDATE_FIELDS)
    clean: dict[str, Any] = {}
    if "address" in data:
        try:
            clean["address"] = normalise_address(channel.kind, data["address"],
                                                 _country(actor.circle_id))
        except ValueError as exc:
            v.add("address", str(exc))
    if "label" in data:
        clean["label"] = _label(v, data)
    active = _active(v, data)
    if active is not None:
        clean["active"] = active
    v.raise_if_any()
    will_be_active = clean.get("active", channel.active)
    address = clean.get("address", channel.address)
    if will_be_active and (not channel.active or address != channel.address):
        # Serialise with other changes to this person's channels, then check again.
        owner.lock(actor.circle_id)
        if _duplicate(owner, actor.circle_id, channel.kind, address, channel.id):
            v.add("address", _DUPLICATE)
            v.raise_if_any()
        if not channel.active:
            _check_active_room(owner, actor.circle_id, channel.id)
    changed = sorted(k for k, value in clean.items() if getattr(channel, k) != value)
    for key in changed:
        setattr(channel, key, clean[key])
    if changed:
        channel.updated_at = now
        _record(actor, owner, channel, "notification_channel.updated", now, fields=changed)
    db.session.commit()
    return channel


def deactivate_channel(actor: User, channel_id: int, now: datetime) -> NotificationChannel:
    """Stop telling anyone on this channel; idempotent.

    The row stays (inactive) because past outbox messages refer to it.
    """
    channel = _visible(actor, channel_id, lock=True)
    if channel.active:
        channel.active = False
        channel.updated_at = now
        _record(actor, _owner_of(channel), channel, "notification_channel.deactivated", now)
        logger.info("channel %s deactivated by user %s", channel.id, actor.id)
    db.session.commit()
    return channel


def _record(actor: User, owner: Owner, channel: NotificationChannel, kind: str,
            now: datetime, **data: Any) -> None:
    """A timeline event about the channel, on its owner (never its address)."""
    subject_type, subject_id = owner.subject(actor.circle_id)
    extra: dict[str, Any] = {"channel_id": channel.id, "channel_kind": channel.kind, **data}
    if owner.police_contact_id is not None:
        extra["police_contact_id"] = owner.police_contact_id
    record(actor.circle_id, subject_type, subject_id, kind, now, actor.id, **extra)


def webhook_secret(actor: User, now: datetime) -> dict[str, Any]:
    """The circle's webhook signing secret and how receivers check it (admin only).

    Reading it is recorded on the circle's timeline (without the secret).
    """
    require_admin(actor)
    secret = signing.webhook_secret(current_app.config["ONCALL"].secret_key, actor.circle_id)
    record(actor.circle_id, "circle", actor.circle_id, "webhook_secret.read", now, actor.id)
    db.session.commit()
    logger.info("webhook secret of circle %s read by user %s", actor.circle_id, actor.id)
    return {
        "secret": secret,
        "algorithm": "HMAC-SHA256",
        "signed": "<timestamp>.<body>",
        "signature_prefix": signing.SIGNATURE_PREFIX,
        "max_skew_seconds": signing.DEFAULT_MAX_SKEW,
        "headers": {
            "timestamp": signing.TIMESTAMP_HEADER,
            "signature": signing.SIGNATURE_HEADER,
            "idempotency_key": signing.IDEMPOTENCY_HEADER,
            "message_id": signing.MESSAGE_ID_HEADER,
            "attempt": signing.ATTEMPT_HEADER,
        },
    }
