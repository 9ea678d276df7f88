"""The telephone system's webhook: signature, idempotence, order, concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from oncall.calls import services
from oncall.calls.models import Call, Caller, TelephonyEvent
from oncall.calls.telephony import circle_secret, sign, verify
from oncall.circles.models import Circle
from oncall.core.clock import utcnow
from oncall.core.timeline import TimelineEvent
from oncall.errors import Unauthorized
from oncall.extensions import db
from tests.calls.helpers import EVENTS_URL, counts, post_event, secret_key


def _call(call_id: int) -> Call:
    db.session.expire_all()
    call = db.session.get(Call, call_id)
    assert call is not None
    return call


def _kinds(call_id: int) -> list[str]:
    return list(
        db.session.scalars(
            select(TimelineEvent.kind)
            .where(TimelineEvent.subject_type == "call", TimelineEvent.subject_id == call_id)
            .order_by(TimelineEvent.id)
        )
    )


# --- the secret and the signature -------------------------------------------------


def test_circle_secret_is_derived_per_circle_and_version() -> None:
    one = SimpleNamespace(id=1, telephony_key_version=1)
    assert circle_secret(one, "k" * 40) == circle_secret(one, "k" * 40)
    assert len(circle_secret(one, "k" * 40)) == 64
    assert circle_secret(one, "k" * 40) != circle_secret(
        SimpleNamespace(id=2, telephony_key_version=1), "k" * 40
    )
    assert circle_secret(one, "k" * 40) != circle_secret(
        SimpleNamespace(id=1, telephony_key_version=2), "k" * 40
    )
    assert circle_secret(one, "k" * 40) != circle_secret(one, "j" * 40)


def test_sign_is_hmac_of_timestamp_and_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, b"{}") == f"sha256={expected}"
    assert sign("s3cret", "1700000000", "{}") == f"sha256={expected}"


def test_verify_returns_the_signing_circle(db, world) -> None:
    now = utcnow()
    ts = str(int(now.timestamp()))
    secret = circle_secret(world.circle, secret_key())
    circle = verify(
        str(world.circle.id),
        ts,
        sign(secret, ts, b"{}"),
        b"{}",
        secret_key=secret_key(),
        now=now,
        max_skew_seconds=300,
    )
    assert circle.id == world.circle.id
    with pytest.raises(Unauthorized):
        verify(
            str(world.circle.id),
            ts,
            sign(secret, ts, b"{}"),
            b"{ }",
            secret_key=secret_key(),
            now=now,
            max_skew_seconds=300,
        )


# --- creating and updating calls ---------------------------------------------------


def test_signed_event_creates_a_call_and_its_caller(client, world) -> None:
    response = post_event(
        client,
        world.circle,
        {"call_ref": "pbx-1", "event": "ringing", "caller_number": "0470 12 34 56", "line": "main"},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["state"] == "ringing"
    call = _call(body["call_id"])
    assert call.circle_id == world.circle.id
    assert call.caller_number == "+32470123456"
    assert call.line == "main"
    assert call.ringing_at is not None
    assert call.answered_at is None
    caller = db.session.get(Caller, call.caller_id)
    assert caller.number == "+32470123456"
    assert caller.circle_id == world.circle.id
    event = db.session.scalars(select(TelephonyEvent)).one()
    assert (event.call_id, event.event, event.caller_number) == (call.id, "ringing", "+32470123456")
    assert _kinds(call.id) == ["call.created", "call.ringing"]


def test_second_call_finds_the_caller_by_number(client, world) -> None:
    t1 = utcnow().replace(microsecond=0) - timedelta(days=2)
    t2 = t1 + timedelta(days=1, hours=1)
    first = post_event(
        client,
        world.circle,
        {
            "call_ref": "a",
            "event": "ringing",
            "caller_number": "+32 470 12 34 56",
            "occurred_at": t1.isoformat(),
        },
    )
    second = post_event(
        client,
        world.circle,
        {
            "call_ref": "b",
            "event": "ringing",
            "caller_number": "0470/12.34.56",
            "occurred_at": t2.isoformat(),
        },
    )
    assert first.status_code == second.status_code == 200
    one, two = _call(first.get_json()["call_id"]), _call(second.get_json()["call_id"])
    assert one.id != two.id
    assert one.caller_id == two.caller_id
    caller = db.session.get(Caller, one.caller_id)
    assert caller.first_seen_at == t1
    assert caller.last_seen_at == t2
    assert counts()["callers"] == 1


def test_full_sequence_with_agent_and_recording(client, world) -> None:
    ref = {"call_ref": "seq-1", "caller_number": "02/524.98.89"}
    post_event(client, world.circle, {**ref, "event": "ringing"})
    answered = post_event(
        client, world.circle, {**ref, "event": "answered", "agent": world.dispatcher.email.upper()}
    )
    ended = post_event(
        client, world.circle, {**ref, "event": "ended", "recording_ref": "rec/2025/001.wav"}
    )
    assert answered.get_json()["state"] == "answered"
    assert ended.get_json() == {"call_id": answered.get_json()["call_id"], "state": "ended"}
    call = _call(ended.get_json()["call_id"])
    assert call.dispatcher_id == world.dispatcher.id
    assert call.recording_ref == "rec/2025/001.wav"
    assert call.ringing_at <= call.answered_at <= call.ended_at
    assert _kinds(call.id) == ["call.created", "call.ringing", "call.answered", "call.ended"]
    assert counts()["telephony_events"] == 3


def test_agent_given_as_id_and_unknown_agent(client, world, other_world) -> None:
    by_id = post_event(
        client,
        world.circle,
        {"call_ref": "x", "event": "answered", "agent": str(world.dispatcher.id)},
    )
    assert _call(by_id.get_json()["call_id"]).dispatcher_id == world.dispatcher.id
    # A dispatcher of another circle, a doctor, or nobody: no dispatcher is set.
    for n, agent in enumerate(
        [
            other_world.dispatcher.email,
            world.doctor.email,
            "nobody@example.test",
            "99999999999999999999999",
        ]
    ):
        response = post_event(
            client, world.circle, {"call_ref": f"y{n}", "event": "answered", "agent": agent}
        )
        assert response.status_code == 200
        assert _call(response.get_json()["call_id"]).dispatcher_id is None


def test_naive_occurred_at_is_the_circle_local_time(db, world) -> None:
    now = datetime(2025, 1, 16, 8, 0, tzinfo=UTC)
    payload = {"call_ref": "tz", "event": "ringing", "occurred_at": datetime(2025, 1, 15, 22, 0)}
    call = services.record_telephony_event(world.circle, payload, now)
    # Brussels is UTC+1 in January.
    assert _call(call.id).ringing_at == datetime(2025, 1, 15, 21, 0, tzinfo=UTC)
    assert _call(call.id).created_at == now


def test_nonexistent_local_time_is_refused(db, world) -> None:
    from oncall.errors import ValidationFailed

    now = datetime(2025, 3, 30, 8, 0, tzinfo=UTC)
    payload = {"call_ref": "gap", "event": "ringing", "occurred_at": datetime(2025, 3, 30, 2, 30)}
    with pytest.raises(ValidationFailed) as caught:
        services.record_telephony_event(world.circle, payload, now)
    assert "occurred_at" in caught.value.fields
    assert counts()["calls"] == 0


@pytest.mark.parametrize("number", [None, "", "anonymous", "Anonymous", "withheld"])
def test_withheld_number_creates_a_call_without_caller(client, world, number) -> None:
    payload: dict[str, Any] = {"call_ref": "anon", "event": "ringing"}
    if number is not None:
        payload["caller_number"] = number
    response = post_event(client, world.circle, payload)
    assert response.status_code == 200
    call = _call(response.get_json()["call_id"])
    assert call.caller_id is None
    assert call.caller_number is None
    assert counts()["callers"] == 0


def test_unreadable_number_still_records_the_call(client, world) -> None:
    response = post_event(
        client, world.circle, {"call_ref": "junk", "event": "ringing", "caller_number": "12"}
    )
    assert response.status_code == 200
    call = _call(response.get_json()["call_id"])
    assert call.caller_id is None
    assert counts()["callers"] == 0
    assert counts()["telephony_events"] == 1


# --- authentication --------------------------------------------------------------


PAYLOAD = {"call_ref": "auth-1", "event": "ringing", "caller_number": "0470123456"}


def _refused(response: Any) -> dict[str, Any]:
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"]["code"] == "bad_signature"
    return body


def _nothing_written() -> None:
    assert counts() == {
        "calls": 0,
        "callers": 0,
        "telephony_events": 0,
        "timeline_events": 0,
        "access_log": 0,
        "visits": 0,
    }


def test_wrong_signature_is_refused(client, world) -> None:
    _refused(
        post_event(
            client, world.circle, PAYLOAD, headers={"X-Oncall-Signature": "sha256=" + "0" * 64}
        )
    )
    _refused(post_event(client, world.circle, PAYLOAD, headers={"X-Oncall-Signature": "0" * 64}))
    _refused(
        post_event(client, world.circle, PAYLOAD, headers={"X-Oncall-Signature": "sha256=ünïcode"})
    )
    _nothing_written()


def test_missing_headers_are_refused(client, world) -> None:
    for name in ("X-Oncall-Circle", "X-Oncall-Timestamp", "X-Oncall-Signature"):
        response = post_event(client, world.circle, PAYLOAD, headers={name: ""})
        _refused(response)
    _refused(client.post(EVENTS_URL, json=PAYLOAD))
    _nothing_written()


def test_body_changed_after_signing_is_refused(client, world) -> None:
    import json

    body = json.dumps(PAYLOAD).encode()
    from oncall.calls.telephony import signed_headers

    headers = signed_headers(world.circle, secret_key(), body, int(utcnow().timestamp()))
    tampered = body.replace(b"0470123456", b"0470654321")
    _refused(
        client.post(
            EVENTS_URL, data=tampered, headers={**headers, "Content-Type": "application/json"}
        )
    )
    _nothing_written()


@pytest.mark.parametrize("skew", [-301, 301, -100000])
def test_stale_or_future_timestamp_is_refused(client, world, skew: int) -> None:
    ts = int(utcnow().timestamp()) + skew
    body = _refused(post_event(client, world.circle, PAYLOAD, timestamp=ts))
    assert "window" in body["error"]["message"]
    _nothing_written()


def test_timestamp_inside_the_window_is_accepted(client, world) -> None:
    ts = int(utcnow().timestamp()) - 250
    assert post_event(client, world.circle, PAYLOAD, timestamp=ts).status_code == 200


@pytest.mark.parametrize("circle_id", [999999, 0, -1, 10**30, "abc", "1 OR 1=1"])
def test_unknown_circle_looks_like_a_bad_signature(client, world, circle_id) -> None:
    fake = SimpleNamespace(id=circle_id, telephony_key_version=1)
    unknown = _refused(post_event(client, fake, PAYLOAD))
    bad = _refused(
        post_event(client, world.circle, PAYLOAD, headers={"X-Oncall-Signature": "sha256=00"})
    )
    assert unknown == bad
    _nothing_written()


def test_another_circles_secret_is_refused(client, world, other_world) -> None:
    import json

    body = json.dumps(PAYLOAD).encode()
    ts = int(utcnow().timestamp())
    other_secret = circle_secret(other_world.circle, secret_key())
    _refused(
        client.post(
            EVENTS_URL,
            data=body,
            headers={
                "X-Oncall-Circle": str(world.circle.id),
                "X-Oncall-Timestamp": str(ts),
                "X-Oncall-Signature": sign(other_secret, ts, body),
                "Content-Type": "application/json",
            },
        )
    )
    _nothing_written()


def test_rotating_the_key_version_invalidates_the_old_secret(client, world) -> None:
    old = SimpleNamespace(
        id=world.circle.id, telephony_key_version=world.circle.telephony_key_version
    )
    world.circle.telephony_key_version += 1
    db.session.commit()
    _refused(post_event(client, old, PAYLOAD))
    assert post_event(client, world.circle, PAYLOAD).status_code == 200


def test_signed_but_invalid_payload_names_the_fields(client, world) -> None:
    response = post_event(client, world.circle, {"call_ref": "", "event": "hung_up", "extra": 1})
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert {"call_ref", "event", "extra"} <= set(fields)
    response = post_event(
        client,
        world.circle,
        {"call_ref": "old", "event": "ringing", "occurred_at": "2001-01-01T00:00:00Z"},
    )
    assert response.status_code == 422
    assert "occurred_at" in response.get_json()["error"]["fields"]
    response = post_event(client, world.circle, {"call_ref": "nul\u0000", "event": "ringing"})
    assert response.status_code == 422
    assert "call_ref" in response.get_json()["error"]["fields"]
    _nothing_written()


def test_openapi_documents_the_signature_headers(client) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/telephony/events"]["post"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"X-Oncall-Circle", "X-Oncall-Timestamp", "X-Oncall-Signature"}
    assert "401" in operation["responses"]


# --- duplicates and order --------------------------------------------------------


def _snapshot(call_id: int) -> dict[str, Any]:
    call = _call(call_id)
    caller = db.session.get(Caller, call.caller_id) if call.caller_id else None
    return {
        "counts": counts(),
        "call": (call.state, call.ringing_at, call.answered_at, call.ended_at, call.updated_at),
        "caller": (caller.first_seen_at, caller.last_seen_at) if caller else None,
    }


def test_replayed_event_changes_nothing(client, world) -> None:
    payload = {"call_ref": "dup", "event": "answered", "caller_number": "0470123456"}
    first = post_event(client, world.circle, payload)
    before = _snapshot(first.get_json()["call_id"])
    # The same request again, and the same event later with other details.
    again = post_event(client, world.circle, payload)
    later = post_event(
        client,
        world.circle,
        {
            **payload,
            "caller_number": "0475123456",
            "occurred_at": utcnow().isoformat(),
            "line": "other",
        },
    )
    assert again.status_code == later.status_code == 200
    assert again.get_json() == later.get_json() == first.get_json()
    assert _snapshot(first.get_json()["call_id"]) == before


def test_ended_first_still_creates_the_call(client, world) -> None:
    t0 = utcnow().replace(microsecond=0) - timedelta(hours=1)
    ref = {"call_ref": "ooo", "caller_number": "0470123456"}
    ended = post_event(
        client,
        world.circle,
        {**ref, "event": "ended", "occurred_at": (t0 + timedelta(minutes=5)).isoformat()},
    )
    assert ended.get_json()["state"] == "ended"
    call_id = ended.get_json()["call_id"]
    answered = post_event(
        client,
        world.circle,
        {**ref, "event": "answered", "occurred_at": (t0 + timedelta(seconds=20)).isoformat()},
    )
    ringing = post_event(
        client, world.circle, {**ref, "event": "ringing", "occurred_at": t0.isoformat()}
    )
    assert answered.get_json() == ringing.get_json() == {"call_id": call_id, "state": "ended"}
    call = _call(call_id)
    assert call.state == "ended"
    assert call.ringing_at == t0
    assert call.answered_at == t0 + timedelta(seconds=20)
    assert call.ended_at == t0 + timedelta(minutes=5)
    assert counts()["calls"] == 1
    assert counts()["callers"] == 1


def test_late_ringing_after_answered_only_fills_ringing_at(client, world) -> None:
    answered = post_event(client, world.circle, {"call_ref": "late", "event": "answered"})
    assert answered.get_json()["state"] == "answered"
    ringing = post_event(client, world.circle, {"call_ref": "late", "event": "ringing"})
    assert ringing.get_json()["state"] == "answered"
    call = _call(answered.get_json()["call_id"])
    assert call.ringing_at is not None
    assert call.state == "answered"


def test_same_call_ref_in_two_circles_makes_two_calls(client, world, other_world) -> None:
    one = post_event(client, world.circle, {"call_ref": "shared", "event": "ringing"})
    two = post_event(client, other_world.circle, {"call_ref": "shared", "event": "ringing"})
    assert one.get_json()["call_id"] != two.get_json()["call_id"]
    assert _call(two.get_json()["call_id"]).circle_id == other_world.circle.id


# --- concurrency (real PostgreSQL row locks and unique keys) ------------------------


def _race(app: Any, circle_id: int, payloads: list[dict[str, Any]]) -> list[Any]:
    """Run ``record_telephony_event`` for each payload at once, one thread each."""
    barrier = threading.Barrier(len(payloads))
    results: list[Any] = [None] * len(payloads)

    def run(i: int) -> None:
        with app.app_context():
            try:
                circle = db.session.get(Circle, circle_id)
                barrier.wait(timeout=10)
                call = services.record_telephony_event(circle, payloads[i], utcnow())
                results[i] = (call.id, call.state)
            except Exception as exc:  # reported to the test below
                results[i] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.parametrize("event", ["ringing", "answered", "ended"])
def test_concurrent_duplicate_events_make_one_call_and_one_event(app, db, world, event) -> None:
    assert db.engine.dialect.name == "postgresql"
    for round_ in range(5):
        payload = {
            "call_ref": f"race-{event}-{round_}",
            "event": event,
            "caller_number": "0470123456",
        }
        results = _race(app, world.circle.id, [payload, dict(payload)])
        assert not [r for r in results if isinstance(r, Exception)], results
        assert results[0] == results[1]
    assert counts()["calls"] == 5
    assert counts()["telephony_events"] == 5
    assert counts()["callers"] == 1


def test_concurrent_different_events_of_one_call(app, db, world) -> None:
    ref = {"call_ref": "race-mixed", "caller_number": "0470123456"}
    results = _race(
        app, world.circle.id, [{**ref, "event": e} for e in ("ringing", "answered", "ended")]
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r[0] for r in results}) == 1
    call = _call(results[0][0])
    assert call.state == "ended"
    assert None not in (call.ringing_at, call.answered_at, call.ended_at)
    assert counts()["telephony_events"] == 3


def test_concurrent_first_calls_from_one_number_make_one_caller(app, db, world) -> None:
    payloads = [
        {"call_ref": f"new-{i}", "event": "ringing", "caller_number": "+32 2 524 98 89"}
        for i in range(4)
    ]
    results = _race(app, world.circle.id, payloads)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert counts()["callers"] == 1
    assert counts()["calls"] == 4
    caller_ids = set(db.session.scalars(select(Call.caller_id)))
    assert len(caller_ids) == 1
    assert None not in caller_ids
