"""Phone numbers as people type them, read with the circle's country."""

from __future__ import annotations

import pytest

from oncall.calls.numbers import InvalidNumber, is_withheld, normalise_number, try_normalise


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("0470 12 34 56", "BE", "+32470123456"),
        ("+32 470 12 34 56", "BE", "+32470123456"),
        ("0032470123456", "BE", "+32470123456"),
        ("00 32 470 12 34 56", "BE", "+32470123456"),
        ("02/524.98.89", "BE", "+3225249889"),
        ("(02) 524 98 89", "BE", "+3225249889"),
        ("0475/12.34.56", "BE", "+32475123456"),
        ("0470-12-34-56", "BE", "+32470123456"),
        ("  +32470123456  ", "BE", "+32470123456"),
        ("01 23 45 67 89", "FR", "+33123456789"),
        ("+33 1 23 45 67 89", "FR", "+33123456789"),
        ("0033 1 23 45 67 89", "FR", "+33123456789"),
        # A French number typed with its prefix stays French in a Belgian circle.
        ("+33 1 23 45 67 89", "BE", "+33123456789"),
        ("0033 1 23 45 67 89", "BE", "+33123456789"),
        # ... and a Belgian one in a French circle.
        ("+32 2 524 98 89", "FR", "+3225249889"),
        ("0470 12 34 56", "be", "+32470123456"),
    ],
)
def test_accepted_forms(raw: str, country: str, expected: str) -> None:
    assert normalise_number(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "country", "reason"),
    [
        ("", "BE", "empty"),
        ("   ", "BE", "empty"),
        ("abc", "BE", "only digits"),
        ("0470 12 34 5a", "BE", "only digits"),
        ("0470123456 ext 12", "BE", "only digits"),
        ("tel:+32470123456", "BE", "only digits"),
        ("++32470123456", "BE", "only digits"),
        ("32+470123456", "BE", "only digits"),
        ("12", "BE", "too short"),
        ("112", "BE", "too short"),
        ("1" * 40, "BE", "longer than"),
        ("+32 470 12 34 56 78 90 12", "BE", "too long"),
        ("047012345", "BE", "not a valid number"),
        ("+32 999 99 99 99", "BE", "not a valid number"),
        ("0123456789", "BE", "not a valid number"),
        ("+999 123 456 789", "BE", "unknown country code"),
        ("0470123456", "ZZ", "international prefix"),
        ("0470123456", "", "international prefix"),
    ],
)
def test_refused_with_a_reason(raw: str, country: str, reason: str) -> None:
    with pytest.raises(InvalidNumber) as caught:
        normalise_number(raw, country)
    assert isinstance(caught.value, ValueError)
    assert reason in caught.value.reason


def test_international_number_without_circle_country() -> None:
    assert normalise_number("+32470123456", "ZZ") == "+32470123456"


@pytest.mark.parametrize("raw", [None, "", "  ", "anonymous", "Anonymous", "WITHHELD", "private"])
def test_withheld_caller_ids(raw: str | None) -> None:
    assert is_withheld(raw)
    assert try_normalise(raw, "BE") is None


def test_a_number_is_not_withheld() -> None:
    assert not is_withheld("0470123456")


def test_try_normalise_never_raises() -> None:
    assert try_normalise("12", "BE") is None
    assert try_normalise("garbage", "BE") is None
    assert try_normalise("0470 12 34 56", "BE") == "+32470123456"
