"""The notification channels API: who may manage which channel, validation, the
per-person limit, tenancy, and the circle's webhook secret."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from oncall.core.timeline import TimelineEvent
from oncall.extensions import db
from oncall.notify import signing
from oncall.notify.models import NotificationChannel
from oncall.notify.services import MAX_ACTIVE_PER_OWNER, MAX_TOTAL_PER_OWNER
from tests import factories as f
from tests.conftest import World

CHANNELS = "/api/v1/notification-channels"
SECRET = f"{CHANNELS}/webhook-secret"
ROLES = ("admin", "dispatcher", "coordinator", "doctor")


def _post(client, world: World, role: str, **body: Any):
    return client.post(CHANNELS, json=body, headers=world.headers[role])


def _fields(response) -> set[str]:
    assert response.status_code == 422, response.get_data(as_text=True)
    return set(response.get_json()["error"]["fields"])


def _channel(owner_user=None, contact=None, **kw: Any) -> NotificationChannel:
    """A channel row written directly (for tests that need many or someone else's)."""
    from oncall.core.clock import utcnow

    circle_id = owner_user.circle_id if owner_user is not None else contact.circle_id
    row = NotificationChannel(
        circle_id=circle_id,
        user_id=owner_user.id if owner_user is not None else None,
        police_contact_id=contact.id if contact is not None else None,
        kind=kw.pop("kind", "email"),
        address=kw.pop("address", f"someone{utcnow().timestamp()}@example.test"),
        label=kw.pop("label", None),
        active=kw.pop("active", True),
        key_version=1,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    db.session.add(row)
    db.session.commit()
    return row


def _timeline(circle_id: int, kind: str) -> list[TimelineEvent]:
    return list(db.session.scalars(
        select(TimelineEvent)
        .where(TimelineEvent.circle_id == circle_id, TimelineEvent.kind == kind)
        .order_by(TimelineEvent.id)
    ))


# --- who may do what -------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_role_registers_and_lists_their_own_channels(client, world: World, role: str):
    user = getattr(world, role)
    response = _post(client, world, role, kind="webhook",
                     address="https://phone.example.test/hook", label=" My phone ")
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["user_id"] == user.id
    assert body["police_contact_id"] is None
    assert body["label"] == "My phone"
    assert body["active"] is True
    # Someone else's channel in the same circle.
    other = world.dispatcher if role != "dispatcher" else world.coordinator
    theirs = _channel(other, address="them@example.test")
    listed = client.get(CHANNELS, headers=world.headers[role]).get_json()["items"]
    ids = {c["id"] for c in listed}
    if role == "admin":
        assert ids == {body["id"], theirs.id}
    else:
        assert ids == {body["id"]}


@pytest.mark.parametrize("role", ["dispatcher", "coordinator", "doctor"])
def test_only_admins_manage_other_peoples_channels(client, world: World, role: str):
    contact = f.make_police_contact(world.circle)
    before = db.session.query(NotificationChannel).count()
    response = _post(client, world, role, kind="email", address="x@example.test",
                     user_id=world.admin.id)
    assert response.status_code == 403
    response = _post(client, world, role, kind="email", address="x@example.test",
                     police_contact_id=contact.id)
    assert response.status_code == 403
    assert db.session.query(NotificationChannel).count() == before
    # Naming oneself is fine.
    own = getattr(world, role)
    response = _post(client, world, role, kind="email", address="me@example.test",
                     user_id=own.id)
    assert response.status_code == 201
    # Lists: their own only, and asking for someone else's is refused.
    assert client.get(f"{CHANNELS}?user_id={own.id}",
                      headers=world.headers[role]).status_code == 200
    assert client.get(f"{CHANNELS}?user_id={world.admin.id}",
                      headers=world.headers[role]).status_code == 403
    assert client.get(f"{CHANNELS}?police_contact_id={contact.id}",
                      headers=world.headers[role]).status_code == 403
    # Someone else's channel cannot be changed or deactivated: it is "not found".
    theirs = _channel(world.admin, address="admin@example.test")
    response = client.patch(f"{CHANNELS}/{theirs.id}", json={"label": "mine now"},
                            headers=world.headers[role])
    assert response.status_code == 404
    response = client.delete(f"{CHANNELS}/{theirs.id}", headers=world.headers[role])
    assert response.status_code == 404
    db.session.expire_all()
    theirs = db.session.get(NotificationChannel, theirs.id)
    assert theirs.active is True
    assert theirs.label is None


def test_admin_manages_users_and_police_contacts_channels(client, world: World):
    contact = f.make_police_contact(world.circle)
    response = _post(client, world, "admin", kind="sms", address="0470 12 34 56",
                     user_id=world.doctor.id)
    assert response.status_code == 201
    doctor_channel = response.get_json()
    assert doctor_channel["address"] == "+32470123456"
    assert doctor_channel["user_id"] == world.doctor.id
    response = _post(client, world, "admin", kind="webhook",
                     address="https://police.example.test/oncall", police_contact_id=contact.id)
    assert response.status_code == 201
    police_channel = response.get_json()
    assert police_channel["police_contact_id"] == contact.id
    assert police_channel["user_id"] is None

    page = client.get(f"{CHANNELS}?police_contact_id={contact.id}",
                      headers=world.headers["admin"]).get_json()
    assert [c["id"] for c in page["items"]] == [police_channel["id"]]
    page = client.get(f"{CHANNELS}?user_id={world.doctor.id}",
                      headers=world.headers["admin"]).get_json()
    assert [c["id"] for c in page["items"]] == [doctor_channel["id"]]
    page = client.get(f"{CHANNELS}?kind=sms", headers=world.headers["admin"]).get_json()
    assert [c["id"] for c in page["items"]] == [doctor_channel["id"]]

    response = client.patch(f"{CHANNELS}/{police_channel['id']}",
                            json={"label": "Night desk", "address": "https://desk.example.test"},
                            headers=world.headers["admin"])
    assert response.status_code == 200
    assert response.get_json()["label"] == "Night desk"
    assert response.get_json()["address"] == "https://desk.example.test"

    # The timeline names the owner and the channel, never the address.
    created = _timeline(world.circle.id, "notification_channel.created")
    assert [(e.subject_type, e.subject_id) for e in created] == [
        ("user", world.doctor.id), ("circle", world.circle.id)]
    assert created[1].data["police_contact_id"] == contact.id
    updated = _timeline(world.circle.id, "notification_channel.updated")
    assert updated[0].data["fields"] == ["address", "label"]
    for event in created + updated:
        text = json.dumps(event.data)
        assert "example.test" not in text
        assert "470" not in text


def test_a_doctor_changes_and_deactivates_their_own_channel(client, world: World):
    headers = world.headers["doctor"]
    created = _post(client, world, "doctor", kind="sms", address="+32 470 11 22 33").get_json()
    response = client.patch(f"{CHANNELS}/{created['id']}",
                            json={"address": "0470 99 88 77", "label": None},
                            headers=headers)
    assert response.status_code == 200
    assert response.get_json()["address"] == "+32470998877"
    response = client.delete(f"{CHANNELS}/{created['id']}", headers=headers)
    assert response.status_code == 204
    # Kept for the history of past messages, but inactive; deleting again changes nothing.
    row = db.session.get(NotificationChannel, created["id"])
    db.session.refresh(row)
    assert row.active is False
    assert client.delete(f"{CHANNELS}/{created['id']}", headers=headers).status_code == 204
    events = _timeline(world.circle.id, "notification_channel.deactivated")
    assert [(e.subject_type, e.subject_id) for e in events] == [("user", world.doctor.id)]
    listed = client.get(f"{CHANNELS}?active=false", headers=headers).get_json()["items"]
    assert [c["id"] for c in listed] == [created["id"]]
    assert client.get(f"{CHANNELS}?active=true", headers=headers).get_json()["items"] == []


# --- tenancy ---------------------------------------------------------------------------


def test_other_circles_channels_are_not_found(client, world: World, other_world: World):
    contact = f.make_police_contact(world.circle)
    mine = _channel(world.doctor, address="doc@example.test")
    for role in ROLES:
        headers = other_world.headers[role]
        assert client.patch(f"{CHANNELS}/{mine.id}", json={"label": "x"},
                             headers=headers).status_code == 404
        assert client.delete(f"{CHANNELS}/{mine.id}", headers=headers).status_code == 404
        listed = client.get(CHANNELS, headers=headers).get_json()["items"]
        assert mine.id not in {c["id"] for c in listed}
    admin = other_world.headers["admin"]
    assert client.get(f"{CHANNELS}?user_id={world.doctor.id}", headers=admin).status_code == 404
    assert client.get(f"{CHANNELS}?police_contact_id={contact.id}",
                      headers=admin).status_code == 404
    # Owners of another circle are named as bad fields.
    response = client.post(CHANNELS, json={"kind": "email", "address": "a@example.test",
                                           "user_id": world.doctor.id}, headers=admin)
    assert _fields(response) == {"user_id"}
    response = client.post(CHANNELS, json={"kind": "email", "address": "a@example.test",
                                           "police_contact_id": contact.id}, headers=admin)
    assert _fields(response) == {"police_contact_id"}
    db.session.expire_all()
    row = db.session.get(NotificationChannel, mine.id)
    assert row.active is True
    assert row.label is None
    assert db.session.query(NotificationChannel).count() == 1


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "address"),
    [
        ("email", "not-an-address"),
        ("email", "   "),
        ("sms", "0470"),
        ("sms", "call me maybe"),
        ("sms", "+32 470 12 34 56 78 90"),
        ("webhook", "http://example.test/hook"),
        ("webhook", "ftp://example.test/hook"),
        ("webhook", "/relative/path"),
        ("webhook", "https://user:pw@example.test/hook"),
    ],
)
def test_bad_addresses_are_named(client, world: World, kind: str, address: str):
    response = _post(client, world, "admin", kind=kind, address=address)
    assert _fields(response) == {"address"}
    assert db.session.query(NotificationChannel).count() == 0


@pytest.mark.parametrize(
    ("kind", "address", "stored"),
    [
        ("email", "  Doc@Example.TEST ", "doc@example.test"),
        ("sms", "02/524.98.89", "+3225249889"),
        ("sms", "+33 6 12 34 56 78", "+33612345678"),
        ("webhook", "http://localhost:8080/hook", "http://localhost:8080/hook"),
        ("webhook", "http://127.0.0.1:9000/x", "http://127.0.0.1:9000/x"),
        ("webhook", "https://hooks.example.test/a?b=c", "https://hooks.example.test/a?b=c"),
    ],
)
def test_good_addresses_are_normalised(client, world: World, kind: str, address: str,
                                       stored: str):
    response = _post(client, world, "coordinator", kind=kind, address=address)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["address"] == stored


def test_every_bad_field_is_named_at_once(client, world: World):
    response = _post(client, world, "admin", kind="pigeon", address="",
                     label="x" * 81, active="perhaps")
    assert _fields(response) >= {"kind", "address", "label", "active"}
    response = _post(client, world, "admin", kind="email", address="a@example.test",
                     user_id=world.doctor.id, police_contact_id=1)
    assert _fields(response) == {"user_id", "police_contact_id"}
    response = _post(client, world, "admin", kind="email", address="a@example.test",
                     colour="blue")
    assert _fields(response) == {"colour"}
    response = _post(client, world, "admin", address="a@example.test")
    assert _fields(response) == {"kind"}
    mine = _post(client, world, "admin", kind="email", address="a@example.test").get_json()
    response = client.patch(f"{CHANNELS}/{mine['id']}", json={"kind": "sms"},
                            headers=world.headers["admin"])
    assert _fields(response) == {"kind"}
    # A changed address is checked against the channel's own kind.
    response = client.patch(f"{CHANNELS}/{mine['id']}", json={"address": "+32470123456"},
                            headers=world.headers["admin"])
    assert _fields(response) == {"address"}


def test_the_same_active_address_twice_is_refused(client, world: World):
    assert _post(client, world, "doctor", kind="email", address="d@example.test").status_code \
        == 201
    response = _post(client, world, "doctor", kind="email", address="D@example.test")
    assert _fields(response) == {"address"}
    # Another person may use it; an inactive copy does not count.
    assert _post(client, world, "dispatcher", kind="email",
                 address="d@example.test").status_code == 201
    inactive = _post(client, world, "doctor", kind="sms", address="+32470000001",
                     active=False).get_json()
    assert _post(client, world, "doctor", kind="sms", address="+32470000001").status_code == 201
    response = client.patch(f"{CHANNELS}/{inactive['id']}", json={"active": True},
                            headers=world.headers["doctor"])
    assert _fields(response) == {"address"}


# --- the per-person limit ----------------------------------------------------------------


def test_at_most_ten_active_channels_per_person(client, world: World):
    for n in range(MAX_ACTIVE_PER_OWNER):
        response = _post(client, world, "doctor", kind="email", address=f"d{n}@example.test")
        assert response.status_code == 201
    response = _post(client, world, "doctor", kind="email", address="one-more@example.test")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "too_many_channels"
    # The limit is per person: the admin may still add for a police contact or themselves.
    assert _post(client, world, "admin", kind="email", address="a@example.test").status_code \
        == 201
    # An inactive channel does not count; reactivating one past the limit is refused.
    first = client.get(CHANNELS, headers=world.headers["doctor"]).get_json()["items"][0]
    assert client.delete(f"{CHANNELS}/{first['id']}",
                         headers=world.headers["doctor"]).status_code == 204
    assert _post(client, world, "doctor", kind="email",
                 address="one-more@example.test").status_code == 201
    response = client.patch(f"{CHANNELS}/{first['id']}", json={"active": True},
                            headers=world.headers["doctor"])
    assert response.status_code == 409
    assert db.session.query(NotificationChannel).filter_by(
        user_id=world.doctor.id, active=True).count() == MAX_ACTIVE_PER_OWNER


def test_inactive_channels_are_bounded_too(client, world: World):
    for n in range(MAX_TOTAL_PER_OWNER):
        _channel(world.doctor, address=f"d{n}@example.test", active=False)
    response = _post(client, world, "doctor", kind="email", address="new@example.test")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "too_many_channels"


# --- the webhook secret ------------------------------------------------------------------


def test_admin_reads_the_circles_webhook_secret(client, world: World, other_world: World,
                                                settings):
    response = client.get(SECRET, headers=world.headers["admin"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["secret"] == signing.webhook_secret(settings.secret_key, world.circle.id)
    assert body["algorithm"] == "HMAC-SHA256"
    assert body["signed"] == "<timestamp>.<body>"
    assert body["signature_prefix"] == signing.SIGNATURE_PREFIX
    assert body["headers"] == {
        "timestamp": signing.TIMESTAMP_HEADER,
        "signature": signing.SIGNATURE_HEADER,
        "idempotency_key": signing.IDEMPOTENCY_HEADER,
        "message_id": signing.MESSAGE_ID_HEADER,
        "attempt": signing.ATTEMPT_HEADER,
    }
    # A receiver holding it verifies what the service signs.
    stamp = 1_700_000_000
    signature = signing.sign(body["secret"], stamp, b'{"a":1}')
    assert signing.verify(body["secret"], stamp, b'{"a":1}', signature, now=stamp)
    # Each circle has its own.
    theirs = client.get(SECRET, headers=other_world.headers["admin"]).get_json()["secret"]
    assert theirs != body["secret"]
    # The read is recorded, without the secret.
    events = _timeline(world.circle.id, "webhook_secret.read")
    assert [(e.subject_type, e.subject_id, e.actor_id) for e in events] == [
        ("circle", world.circle.id, world.admin.id)]
    assert body["secret"] not in json.dumps(events[0].data)


@pytest.mark.parametrize("role", ["dispatcher", "coordinator", "doctor"])
def test_only_admins_read_the_webhook_secret(client, world: World, role: str):
    response = client.get(SECRET, headers=world.headers[role])
    assert response.status_code == 403
    assert "secret" not in response.get_json()
    assert _timeline(world.circle.id, "webhook_secret.read") == []


def test_anonymous_clients_get_nothing(client, world: World):
    assert client.get(CHANNELS).status_code == 401
    assert client.post(CHANNELS, json={"kind": "email", "address": "a@example.test"}
                       ).status_code == 401
    assert client.get(SECRET).status_code == 401
