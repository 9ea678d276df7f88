from datetime import UTC, datetime

import pytest

from oncall.core.clock import LocalTimeError, local_day_bounds, localize, parse_instant

BRUSSELS = "Europe/Brussels"


def test_spring_gap_is_reported_as_not_existing():
    with pytest.raises(LocalTimeError, match="does not exist"):
        localize(datetime(2026, 3, 29, 2, 30), BRUSSELS)


def test_autumn_repeat_is_reported_as_ambiguous():
    with pytest.raises(LocalTimeError, match="happens twice"):
        localize(datetime(2026, 10, 25, 2, 30), BRUSSELS)


def test_ordinary_local_time_converts():
    assert parse_instant(datetime(2026, 7, 1, 20, 0), BRUSSELS) == datetime(
        2026, 7, 1, 18, 0, tzinfo=UTC
    )


def test_local_days_around_the_changes_last_23_and_25_hours():
    from datetime import date

    start, end = local_day_bounds(date(2026, 3, 29), BRUSSELS)
    assert (end - start).total_seconds() == 23 * 3600
    start, end = local_day_bounds(date(2026, 10, 25), BRUSSELS)
    assert (end - start).total_seconds() == 25 * 3600
