"""Who a step reaches and on which addresses.

A step's target is the alert's doctor, the circle's active coordinators, or the
police contacts of the visit's zone (the zone's own, else the circle-wide ones).
A person is reached on their active notification channels; a user without any
is reached by email and SMS from their profile when those channels are
configured, and a police contact also on the email, phone and webhook of its
record. The same address is never used twice for one step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from sqlalchemy import select

from oncall.accounts.models import User
from oncall.circles.models import PoliceContact
from oncall.circles.policies import policy_steps
from oncall.circles.services import police_contacts_for_zone
from oncall.extensions import db
from oncall.notify.models import NotificationChannel


@dataclass(frozen=True)
class Address:
    """One way to reach one recipient."""

    channel: str
    address: str
    channel_id: int | None = None


@dataclass
class Recipient:
    """A user or a police contact and their addresses."""

    type: str
    id: int
    name: str
    language: str
    addresses: list[Address] = field(default_factory=list)
    contact: PoliceContact | None = None


class Directory:
    """What one engine pass looks up, remembered for its length: recipients, policies, ids."""

    def __init__(self) -> None:
        self._policies: dict[tuple[int, str], list[dict[str, Any]]] = {}
        # Strong references: the session's identity map holds rows weakly, and a
        # pass that let them go would load the same visit, circle or doctor again
        # for every alert.
        self._rows: dict[tuple[type, int], Any] = {}
        self._kept: list[Any] = []
        settings = current_app.config["ONCALL"]
        self._email = bool(settings.smtp_host)
        self._sms = bool(settings.sms_gateway_url)
        self._coordinators: dict[int, list[Recipient]] = {}
        self._police: dict[tuple[int, int | None], list[Recipient]] = {}
        self._users: dict[int, Recipient | None] = {}

    def row(self, model: type, row_id: int) -> Any:
        """``db.session.get(model, row_id)``, remembered for the pass."""
        key = (model, row_id)
        if key not in self._rows:
            self._rows[key] = db.session.get(model, row_id)
        return self._rows[key]

    def keep(self, rows: list[Any]) -> None:
        """Hold rows loaded in bulk for the length of the pass."""
        self._kept.extend(rows)
        for r in rows:
            self._rows[(type(r), r.id)] = r

    def policy(self, circle_id: int, kind: str) -> list[dict[str, Any]]:
        """A copy of the circle's current steps for ``kind`` (to freeze into an alert)."""
        key = (circle_id, kind)
        if key not in self._policies:
            self._policies[key] = policy_steps(circle_id, kind)
        return copy.deepcopy(self._policies[key])

    def _channels(self, column: Any, owner_id: int) -> list[Address]:
        rows = db.session.scalars(
            select(NotificationChannel)
            .where(column == owner_id, NotificationChannel.active.is_(True))
            .order_by(NotificationChannel.id)
        )
        return [Address(r.kind, r.address, r.id) for r in rows]

    def _usable(self, addresses: list[Address]) -> list[Address]:
        seen: set[tuple[str, str]] = set()
        out: list[Address] = []
        for a in addresses:
            if a.channel == "email" and not self._email:
                continue
            if a.channel == "sms" and not self._sms:
                continue
            if (a.channel, a.address) in seen:
                continue
            seen.add((a.channel, a.address))
            out.append(a)
        return out

    def user(self, user_id: int) -> Recipient | None:
        if user_id not in self._users:
            user = db.session.get(User, user_id)
            if user is None or not user.active:
                self._users[user_id] = None
            else:
                self._users[user_id] = self._for_user(user)
        return self._users[user_id]

    def _for_user(self, user: User) -> Recipient:
        addresses = self._channels(NotificationChannel.user_id, user.id)
        if not addresses:
            addresses = [Address("email", user.email)]
            if user.phone:
                addresses.append(Address("sms", user.phone))
        return Recipient("user", user.id, user.name, user.language, self._usable(addresses))

    def coordinators(self, circle_id: int) -> list[Recipient]:
        if circle_id not in self._coordinators:
            users = db.session.scalars(
                select(User)
                .where(
                    User.circle_id == circle_id,
                    User.role == "coordinator",
                    User.active.is_(True),
                )
                .order_by(User.id)
            )
            found = [self._for_user(u) for u in users]
            for r in found:
                self._users[r.id] = r
            self._coordinators[circle_id] = found
        return self._coordinators[circle_id]

    def police(self, circle_id: int, zone_id: int | None) -> list[Recipient]:
        key = (circle_id, zone_id)
        if key not in self._police:
            found = []
            for contact in police_contacts_for_zone(circle_id, zone_id):
                addresses = self._channels(NotificationChannel.police_contact_id, contact.id)
                if contact.webhook_url:
                    addresses.append(Address("webhook", contact.webhook_url))
                if contact.email:
                    addresses.append(Address("email", contact.email))
                if contact.phone:
                    addresses.append(Address("sms", contact.phone))
                found.append(
                    Recipient(
                        "police_contact", contact.id, contact.name, "fr",
                        self._usable(addresses), contact,
                    )
                )
            self._police[key] = found
        return self._police[key]
