"""The rota across daylight-saving changes (Europe/Brussels).

In 2026 the clocks go forward at 02:00 on Sunday 29 March (CET +01:00 -> CEST
+02:00) and back at 03:00 on Sunday 25 October (CEST -> CET). These dates are in
the past for the API's clock, so shifts are created through the services with
``now`` given: time is a parameter.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from oncall.core.clock import LocalTimeError
from oncall.core.timeline import TimelineEvent
from oncall.errors import Conflict, Forbidden, ValidationFailed
from oncall.extensions import db
from oncall.rota.models import Shift
from oncall.rota.services import (
    create_shift,
    local_shift_times,
    on_duty,
    plan_shifts,
    who_is_on_duty,
)
from tests import factories as f

TZ = "Europe/Brussels"
BEFORE = datetime(2026, 1, 1, tzinfo=UTC)  # "now" when the 2026 rota is written

SPRING_SATURDAY, SPRING_SUNDAY = date(2026, 3, 28), date(2026, 3, 29)
AUTUMN_SATURDAY, AUTUMN_SUNDAY = date(2026, 10, 24), date(2026, 10, 25)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def shift_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Shift)) or 0


def night_shift(world, saturday: date, doctor=None):
    """Saturday 20:00 -> Sunday 08:00, given as naive local times."""
    sunday = saturday + timedelta(days=1)
    return create_shift(
        world.admin,
        {
            "zone_id": world.zone.id,
            "doctor_id": (doctor or world.doctor).id,
            "starts_at": datetime.combine(saturday, time(20, 0)),
            "ends_at": datetime.combine(sunday, time(8, 0)),
        },
        BEFORE,
    )


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute))


def on_duty_ids(world, at: datetime) -> list[int]:
    return [d["doctor_id"] for d in who_is_on_duty(world.admin, world.zone.id, at)["doctors"]]


# --------------------------------------------------------------------- night shifts


def test_spring_night_shift_is_eleven_hours(world):
    info = night_shift(world, SPRING_SATURDAY)

    assert info.starts_at == utc(2026, 3, 28, 19, 0)  # 20:00 CET
    assert info.ends_at == utc(2026, 3, 29, 6, 0)  # 08:00 CEST
    assert info.ends_at - info.starts_at == timedelta(hours=11)
    assert info.starts_at_local.isoformat() == "2026-03-28T20:00:00+01:00"
    assert info.ends_at_local.isoformat() == "2026-03-29T08:00:00+02:00"
    stored = db.session.get(Shift, info.id)
    assert (stored.starts_at, stored.ends_at) == (info.starts_at, info.ends_at)


def test_autumn_night_shift_is_thirteen_hours(world):
    info = night_shift(world, AUTUMN_SATURDAY)

    assert info.starts_at == utc(2026, 10, 24, 18, 0)  # 20:00 CEST
    assert info.ends_at == utc(2026, 10, 25, 7, 0)  # 08:00 CET
    assert info.ends_at - info.starts_at == timedelta(hours=13)
    assert info.starts_at_local.isoformat() == "2026-10-24T20:00:00+02:00"
    assert info.ends_at_local.isoformat() == "2026-10-25T08:00:00+01:00"


@pytest.mark.parametrize("sunday", [SPRING_SUNDAY, AUTUMN_SUNDAY], ids=["spring", "autumn"])
def test_night_doctor_on_duty_through_the_change_until_eight(world, sunday):
    night_shift(world, sunday - timedelta(days=1))
    zone, circle = world.zone.id, world.circle.id

    for hour, minute in [(1, 30), (3, 30), (7, 59)]:
        at = local(sunday, hour, minute)
        assert on_duty_ids(world, at) == [world.doctor.id], f"{at:%H:%M}"
    assert on_duty_ids(world, local(sunday, 8, 0)) == []
    # The engine's own entry point agrees, with UTC instants.
    eight = local(sunday, 8, 0).replace(tzinfo=ZoneInfo(TZ))
    assert on_duty(circle, zone, eight - timedelta(minutes=1))
    assert on_duty(circle, zone, eight) == []


@pytest.mark.parametrize(
    ("sunday", "utc_bounds"),
    [
        (SPRING_SUNDAY, (utc(2026, 3, 29, 6), utc(2026, 3, 29, 18))),
        (AUTUMN_SUNDAY, (utc(2026, 10, 25, 7), utc(2026, 10, 25, 19))),
    ],
    ids=["spring", "autumn"],
)
def test_day_shift_on_the_sunday_takes_over_at_eight(world, sunday, utc_bounds):
    night_shift(world, sunday - timedelta(days=1))
    day_doctor = f.make_user(world.circle, "doctor")
    info = create_shift(
        world.admin,
        {
            "zone_id": world.zone.id,
            "doctor_id": day_doctor.id,
            "starts_at": local(sunday, 8),
            "ends_at": local(sunday, 20),
        },
        BEFORE,
    )

    assert (info.starts_at, info.ends_at) == utc_bounds
    assert info.ends_at - info.starts_at == timedelta(hours=12)
    assert on_duty_ids(world, local(sunday, 7, 59)) == [world.doctor.id]
    assert on_duty_ids(world, local(sunday, 8, 0)) == [day_doctor.id]
    assert on_duty_ids(world, local(sunday, 19, 59)) == [day_doctor.id]
    assert on_duty_ids(world, local(sunday, 20, 0)) == []


# --------------------------------------------------------------- gap and repeated hour


def test_half_past_two_on_29_march_does_not_exist(world):
    with pytest.raises(ValidationFailed) as err:
        create_shift(
            world.admin,
            {
                "zone_id": world.zone.id,
                "doctor_id": world.doctor.id,
                "starts_at": local(SPRING_SUNDAY, 2, 30),
                "ends_at": local(SPRING_SUNDAY, 8, 0),
            },
            BEFORE,
        )
    (reason,) = err.value.fields["starts_at"]
    assert "does not exist" in reason
    assert "offset" in reason
    assert set(err.value.fields) == {"starts_at"}
    assert shift_count() == 0


def test_half_past_two_on_25_october_is_ambiguous_without_offset(world):
    data = {
        "zone_id": world.zone.id,
        "doctor_id": world.doctor.id,
        "starts_at": local(AUTUMN_SUNDAY, 2, 30),
        "ends_at": local(AUTUMN_SUNDAY, 8, 0),
    }
    with pytest.raises(ValidationFailed) as err:
        create_shift(world.admin, data, BEFORE)
    (reason,) = err.value.fields["starts_at"]
    assert "twice" in reason
    assert "offset" in reason
    assert shift_count() == 0


def test_half_past_two_on_25_october_with_either_offset(world):
    summer = datetime.fromisoformat("2026-10-25T02:30:00+02:00")
    winter = datetime.fromisoformat("2026-10-25T02:30:00+01:00")
    other = f.make_user(world.circle, "doctor")
    first = create_shift(
        world.admin,
        {
            "zone_id": world.zone.id,
            "doctor_id": world.doctor.id,
            "starts_at": summer,
            "ends_at": local(AUTUMN_SUNDAY, 8),
        },
        BEFORE,
    )
    second = create_shift(
        world.admin,
        {
            "zone_id": world.zone.id,
            "doctor_id": other.id,
            "starts_at": winter,
            "ends_at": local(AUTUMN_SUNDAY, 8),
        },
        BEFORE,
    )

    assert first.starts_at == utc(2026, 10, 25, 0, 30)
    assert second.starts_at == utc(2026, 10, 25, 1, 30)
    assert second.starts_at - first.starts_at == timedelta(hours=1)
    assert first.starts_at_local.isoformat() == "2026-10-25T02:30:00+02:00"
    assert second.starts_at_local.isoformat() == "2026-10-25T02:30:00+01:00"
    # Between the two 02:30s only the first doctor is on duty.
    assert on_duty_ids(world, utc(2026, 10, 25, 1, 0)) == [world.doctor.id]
    assert on_duty_ids(world, utc(2026, 10, 25, 1, 30)) == [world.doctor.id, other.id]


def test_on_duty_at_an_ambiguous_local_time_needs_an_offset(world):
    with pytest.raises(ValidationFailed) as err:
        who_is_on_duty(world.admin, world.zone.id, local(AUTUMN_SUNDAY, 2, 30))
    assert "offset" in err.value.fields["at"][0]


# ----------------------------------------------------------------- local_shift_times


@pytest.mark.parametrize(
    ("saturday", "start", "end", "hours", "utc_start"),
    [
        (SPRING_SATURDAY, time(19), time(8), 12, utc(2026, 3, 28, 18)),
        (AUTUMN_SATURDAY, time(19), time(8), 14, utc(2026, 10, 24, 17)),
        (SPRING_SATURDAY, time(20), time(8), 11, utc(2026, 3, 28, 19)),
        (AUTUMN_SATURDAY, time(20), time(8), 13, utc(2026, 10, 24, 18)),
        (date(2026, 3, 21), time(19), time(8), 13, utc(2026, 3, 21, 18)),  # no change
        (date(2026, 7, 4), time(19), time(8), 13, utc(2026, 7, 4, 17)),  # summer
        (SPRING_SATURDAY, time(8), time(8), 23, utc(2026, 3, 28, 7)),  # 24 h local
        (AUTUMN_SATURDAY, time(8), time(8), 25, utc(2026, 10, 24, 6)),
    ],
)
def test_local_shift_times(saturday, start, end, hours, utc_start):
    starts_at, ends_at = local_shift_times(TZ, saturday, start, end)
    assert starts_at == utc_start
    assert starts_at.tzinfo == UTC
    assert ends_at - starts_at == timedelta(hours=hours)


def test_local_shift_times_same_day():
    starts_at, ends_at = local_shift_times(TZ, SPRING_SUNDAY, time(8), time(20))
    assert (starts_at, ends_at) == (utc(2026, 3, 29, 6), utc(2026, 3, 29, 18))


@pytest.mark.parametrize(
    ("day", "start", "end"),
    [
        (SPRING_SUNDAY, time(2, 30), time(8)),  # start in the gap
        (SPRING_SATURDAY, time(20), time(2, 30)),  # end in the gap
        (AUTUMN_SUNDAY, time(2, 30), time(8)),  # start repeated
    ],
)
def test_local_shift_times_refuses_missing_or_repeated_times(day, start, end):
    with pytest.raises(LocalTimeError):
        local_shift_times(TZ, day, start, end)


# ----------------------------------------------------------------------- plan_shifts


def test_plan_shifts_over_both_changes(world):
    days = [SPRING_SATURDAY, SPRING_SUNDAY, AUTUMN_SATURDAY]
    infos = plan_shifts(
        world.admin, world.zone.id, world.doctor.id, days, time(19), time(8), BEFORE
    )

    lengths = [(i.ends_at - i.starts_at) / timedelta(hours=1) for i in infos]
    assert lengths == [12, 13, 14]
    assert all(i.starts_at_local.hour == 19 for i in infos)
    assert all(i.ends_at_local.hour == 8 for i in infos)
    assert shift_count() == 3
    events = db.session.scalars(
        select(TimelineEvent).where(TimelineEvent.subject_type == "shift")
    ).all()
    assert sorted(e.subject_id for e in events) == sorted(i.id for i in infos)


def test_plan_shifts_is_all_or_nothing_on_a_bad_day(world):
    with pytest.raises(ValidationFailed) as err:
        plan_shifts(
            world.admin,
            world.zone.id,
            world.doctor.id,
            [date(2026, 3, 22), SPRING_SUNDAY, date(2026, 4, 5)],
            time(2, 30),
            time(9),
            BEFORE,
        )
    assert set(err.value.fields) == {"days.1"}
    assert "does not exist" in err.value.fields["days.1"][0]
    assert shift_count() == 0


def test_plan_shifts_is_all_or_nothing_on_an_overlap(world):
    night_shift(world, AUTUMN_SATURDAY)
    with pytest.raises(Conflict) as err:
        plan_shifts(
            world.admin,
            world.zone.id,
            world.doctor.id,
            [AUTUMN_SATURDAY - timedelta(days=1), AUTUMN_SUNDAY],  # Sunday 07:00 overlaps
            time(7),
            time(19),
            BEFORE,
        )
    assert err.value.code == "shift_overlap"
    assert shift_count() == 1


def test_plan_shifts_refuses_duplicate_days(world):
    with pytest.raises(Conflict) as err:
        plan_shifts(
            world.admin,
            world.zone.id,
            world.doctor.id,
            [SPRING_SATURDAY, SPRING_SATURDAY],
            time(19),
            time(8),
            BEFORE,
        )
    assert err.value.code == "shift_overlap"
    assert shift_count() == 0


def test_plan_shifts_names_every_bad_field(world):
    inactive = f.make_zone(world.circle, "Fermée", active=False)
    with pytest.raises(ValidationFailed) as err:
        plan_shifts(world.admin, inactive.id, world.dispatcher.id, [], time(19), time(8), BEFORE)
    assert set(err.value.fields) == {"zone_id", "doctor_id", "days"}
    assert shift_count() == 0


def test_plan_shifts_needs_an_admin(world):
    with pytest.raises(Forbidden):
        plan_shifts(
            world.dispatcher,
            world.zone.id,
            world.doctor.id,
            [SPRING_SATURDAY],
            time(19),
            time(8),
            BEFORE,
        )
    assert shift_count() == 0
