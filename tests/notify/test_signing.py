"""Webhook signatures: derived per circle, verified in constant time, fresh only."""

from __future__ import annotations

from datetime import UTC, datetime

from oncall.notify.signing import sign, verify, webhook_secret

KEY = "service-secret-key"
NOW = 1_750_000_000
BODY = b'{"alert":{"id":5},"message_id":42}'


def test_secret_is_derived_per_circle_and_key() -> None:
    secret = webhook_secret(KEY, 7)
    assert secret == webhook_secret(KEY, 7)
    assert len(secret) == 64
    int(secret, 16)
    assert secret != webhook_secret(KEY, 8)
    assert secret != webhook_secret("another-key", 7)


def test_signature_has_the_documented_form() -> None:
    signature = sign("s3cret", NOW, BODY)
    assert signature.startswith("sha256=")
    assert signature == sign("s3cret", str(NOW), BODY.decode())
    assert signature != sign("s3cret", NOW + 1, BODY)


def test_verify_accepts_a_fresh_valid_signature() -> None:
    secret = webhook_secret(KEY, 7)
    signature = sign(secret, NOW, BODY)
    assert verify(secret, str(NOW), BODY, signature, now=NOW + 10)
    now = datetime.fromtimestamp(NOW - 10, UTC)
    assert verify(secret, NOW, BODY, signature, now=now)


def test_verify_rejects_a_tampered_body() -> None:
    secret = webhook_secret(KEY, 7)
    signature = sign(secret, NOW, BODY)
    tampered = BODY.replace(b'"id":5', b'"id":6')
    assert not verify(secret, NOW, tampered, signature, now=NOW)


def test_verify_rejects_a_stale_or_future_timestamp() -> None:
    secret = webhook_secret(KEY, 7)
    signature = sign(secret, NOW, BODY)
    assert verify(secret, NOW, BODY, signature, now=NOW + 300)
    assert not verify(secret, NOW, BODY, signature, now=NOW + 301)
    assert not verify(secret, NOW, BODY, signature, now=NOW - 301)
    assert not verify(secret, NOW, BODY, signature, now=NOW + 61, max_skew=60)


def test_verify_rejects_another_circles_secret_and_missing_parts() -> None:
    signature = sign(webhook_secret(KEY, 7), NOW, BODY)
    assert not verify(webhook_secret(KEY, 8), NOW, BODY, signature, now=NOW)
    assert not verify(webhook_secret(KEY, 7), None, BODY, signature, now=NOW)
    assert not verify(webhook_secret(KEY, 7), NOW, BODY, None, now=NOW)
    assert not verify(webhook_secret(KEY, 7), "soon", BODY, signature, now=NOW)
