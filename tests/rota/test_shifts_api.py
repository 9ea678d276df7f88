"""The shift and on-duty endpoints: validation, tenancy, roles, the rota as a record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from oncall.core.clock import utcnow
from oncall.core.timeline import TimelineEvent
from oncall.errors import Conflict, Forbidden, ValidationFailed
from oncall.extensions import db
from oncall.rota.models import Shift
from oncall.rota.services import (
    create_shift,
    delete_shift,
    list_shifts,
    update_shift,
    who_is_on_duty,
)
from tests import factories as f

SHIFTS = "/api/v1/shifts"
# Last weekend of March 2027 (clocks go forward on Sunday 28 March): in the future.
NIGHT = {"starts_at": "2027-03-27T20:00:00", "ends_at": "2027-03-28T08:00:00"}


def shift_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Shift)) or 0


def body(world, doctor=None, zone=None, **kw):
    return {
        "zone_id": (zone or world.zone).id,
        "doctor_id": (doctor or world.doctor).id,
        **NIGHT,
        **kw,
    }


def future_shift(world, doctor=None, zone=None, days: int = 3, hours: int = 12):
    start = utcnow().replace(microsecond=0) + timedelta(days=days)
    return f.make_shift(
        zone or world.zone, doctor or world.doctor, start, start + timedelta(hours=hours)
    )


def post(client, world, data, role="admin"):
    return client.post(SHIFTS, json=data, headers=world.headers[role])


# ---------------------------------------------------------------------------- create


def test_create_with_naive_local_times_answers_utc_and_local(client, world):
    response = post(client, world, body(world, note="Garde de nuit"))

    assert response.status_code == 201, response.get_json()
    shift = response.get_json()
    assert shift["zone_id"] == world.zone.id
    assert shift["doctor_id"] == world.doctor.id
    assert shift["starts_at"] == "2027-03-27T19:00:00+00:00"
    assert shift["ends_at"] == "2027-03-28T06:00:00+00:00"
    assert shift["starts_at_local"] == "2027-03-27T20:00:00+01:00"
    assert shift["ends_at_local"] == "2027-03-28T08:00:00+02:00"
    assert shift["note"] == "Garde de nuit"
    stored = db.session.get(Shift, shift["id"])
    assert stored.ends_at - stored.starts_at == timedelta(hours=11)
    kinds = db.session.scalars(
        select(TimelineEvent.kind).where(
            TimelineEvent.subject_type == "shift", TimelineEvent.subject_id == shift["id"]
        )
    ).all()
    assert kinds == ["shift_created"]


def test_create_with_offsets(client, world):
    response = post(
        client,
        world,
        body(world, starts_at="2027-10-31T02:30:00+02:00", ends_at="2027-10-31T02:30:00+01:00"),
    )
    assert response.status_code == 201, response.get_json()
    shift = response.get_json()
    assert shift["starts_at"] == "2027-10-31T00:30:00+00:00"
    assert shift["ends_at"] == "2027-10-31T01:30:00+00:00"


@pytest.mark.parametrize(
    ("starts_at", "expected"),
    [("2027-03-28T02:30:00", "does not exist"), ("2027-10-31T02:30:00", "twice")],
    ids=["gap", "repeated"],
)
def test_create_refuses_local_times_that_need_an_offset(client, world, starts_at, expected):
    response = post(client, world, body(world, starts_at=starts_at, ends_at="2027-10-31T09:00:00"))

    assert response.status_code == 422
    reason = response.get_json()["error"]["fields"]["starts_at"][0]
    assert expected in reason
    assert "offset" in reason
    assert shift_count() == 0


def test_bad_input_is_named_field_by_field_and_nothing_is_written(client, world):
    closed = f.make_zone(world.circle, "Fermée", active=False)
    response = post(
        client,
        world,
        {
            "zone_id": closed.id,
            "doctor_id": world.dispatcher.id,
            "starts_at": "2027-01-10T20:00:00",
            "ends_at": "2027-01-10T08:00:00",
            "note": "x",
        },
    )

    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"zone_id", "doctor_id", "ends_at"}
    assert "not active" in fields["zone_id"][0]
    assert "not a doctor" in fields["doctor_id"][0]
    assert "after" in fields["ends_at"][0]
    assert shift_count() == 0


def test_schema_errors_are_named_together(client, world):
    response = post(
        client,
        world,
        {"zone_id": "one", "starts_at": "tomorrow", "ends_at": None, "colour": "red"},
    )
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert {"zone_id", "doctor_id", "starts_at", "ends_at", "colour"} <= set(fields)
    assert shift_count() == 0


def test_a_shift_lasts_at_most_48_hours(client, world):
    response = post(
        client, world, body(world, starts_at="2027-01-10T08:00:00", ends_at="2027-01-12T08:01:00")
    )
    assert response.status_code == 422
    assert "48 hours" in response.get_json()["error"]["fields"]["ends_at"][0]

    ok = post(
        client, world, body(world, starts_at="2027-01-10T08:00:00", ends_at="2027-01-12T08:00:00")
    )
    assert ok.status_code == 201
    assert shift_count() == 1


def test_deactivated_doctor_and_other_circles_refs_are_refused(client, world, other_world):
    gone = f.make_user(world.circle, "doctor", active=False)
    response = post(client, world, body(world, doctor=gone))
    assert response.get_json()["error"]["fields"]["doctor_id"] == ["this doctor is deactivated"]

    response = post(client, world, body(world, doctor=other_world.doctor, zone=other_world.zone))
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"zone_id", "doctor_id"}
    assert shift_count() == 0


def test_a_shift_that_has_already_ended_is_not_created(client, world):
    response = post(
        client, world, body(world, starts_at="2025-01-10T08:00:00", ends_at="2025-01-10T20:00:00")
    )
    assert response.status_code == 422
    assert "already ended" in response.get_json()["error"]["fields"]["ends_at"][0]
    assert shift_count() == 0


# --------------------------------------------------------------------------- overlaps


def test_two_doctors_overlapping_are_both_on_duty(client, world):
    second = f.make_user(world.circle, "doctor", name="Dr Second", phone="+32470000002")
    assert post(client, world, body(world)).status_code == 201
    response = post(
        client,
        world,
        body(world, doctor=second, starts_at="2027-03-27T22:00:00", ends_at="2027-03-28T04:00:00"),
    )
    assert response.status_code == 201

    on_duty = client.get(
        "/api/v1/on-duty",
        query_string={"zone": world.zone.id, "at": "2027-03-28T03:30:00"},
        headers=world.headers["dispatcher"],
    )
    assert on_duty.status_code == 200
    data = on_duty.get_json()
    assert data["zone_id"] == world.zone.id
    assert data["at"] == "2027-03-28T01:30:00+00:00"
    doctors = {d["doctor_id"]: d for d in data["doctors"]}
    assert set(doctors) == {world.doctor.id, second.id}
    assert doctors[second.id]["name"] == "Dr Second"
    assert doctors[second.id]["phone"] == "+32470000002"
    assert doctors[second.id]["starts_at"] == "2027-03-27T21:00:00+00:00"
    assert doctors[second.id]["ends_at"] == "2027-03-28T02:00:00+00:00"
    assert set(doctors[second.id]) == {
        "shift_id",
        "doctor_id",
        "name",
        "phone",
        "starts_at",
        "ends_at",
    }


def test_same_doctor_may_not_overlap_in_a_zone(client, world):
    first = post(client, world, body(world)).get_json()
    response = post(
        client, world, body(world, starts_at="2027-03-28T07:00:00", ends_at="2027-03-28T12:00:00")
    )

    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "shift_overlap"
    assert str(first["id"]) in error["fields"]["doctor_id"][0]
    assert shift_count() == 1


def test_same_doctor_back_to_back_or_in_another_zone_is_fine(client, world):
    south = f.make_zone(world.circle, "Sud")
    assert post(client, world, body(world)).status_code == 201
    after = body(world, starts_at="2027-03-28T08:00:00", ends_at="2027-03-28T20:00:00")
    assert post(client, world, after).status_code == 201
    assert post(client, world, body(world, zone=south)).status_code == 201
    assert shift_count() == 3


def test_moving_a_shift_onto_another_of_the_same_doctor_is_refused(client, world):
    first = future_shift(world, days=3)
    second = future_shift(world, days=5)
    response = client.patch(
        f"{SHIFTS}/{second.id}",
        json={
            "starts_at": (first.starts_at + timedelta(hours=1)).isoformat(),
            "ends_at": (first.ends_at + timedelta(hours=1)).isoformat(),
        },
        headers=world.headers["admin"],
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "shift_overlap"
    db.session.expire_all()
    assert db.session.get(Shift, second.id).starts_at == second.starts_at


# ---------------------------------------------------------------------- list / read


def test_list_by_period_zone_and_doctor(client, world):
    other_doctor = f.make_user(world.circle, "doctor")
    south = f.make_zone(world.circle, "Sud")
    a = post(client, world, body(world)).get_json()
    b = post(client, world, body(world, doctor=other_doctor, zone=south)).get_json()
    c = post(
        client, world, body(world, starts_at="2027-04-10T08:00:00", ends_at="2027-04-10T20:00:00")
    ).get_json()

    def page(**query):
        response = client.get(SHIFTS, query_string=query, headers=world.headers["dispatcher"])
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def ids(**query):
        return [s["id"] for s in page(**query)["items"]]

    assert ids() == [a["id"], b["id"], c["id"]]
    # Overlap with the period: the night shift ends at 08:00 local on the 28th.
    assert ids(start="2027-03-28T07:59:00", end="2027-03-29T00:00:00") == [a["id"], b["id"]]
    assert ids(start="2027-03-28T08:00:00", end="2027-04-30T00:00:00") == [c["id"]]
    assert ids(zone_id=south.id) == [b["id"]]
    assert ids(doctor_id=world.doctor.id) == [a["id"], c["id"]]
    # Paging combines with the filters; next_offset is null on the last page.
    first = page(doctor_id=world.doctor.id, limit=1)
    assert [s["id"] for s in first["items"]] == [a["id"]]
    assert (first["limit"], first["offset"], first["next_offset"]) == (1, 0, 1)
    last = page(doctor_id=world.doctor.id, limit=1, offset=first["next_offset"])
    assert [s["id"] for s in last["items"]] == [c["id"]]
    assert last["next_offset"] is None
    assert page(limit=3)["next_offset"] is None
    assert ids(limit=2, offset=1) == [b["id"], c["id"]]
    assert page(offset=3) == {"items": [], "limit": 50, "offset": 3, "next_offset": None}


def test_list_refuses_a_reversed_period_and_ambiguous_bounds(client, world):
    response = client.get(
        SHIFTS,
        query_string={"start": "2027-10-31T02:30:00", "end": "2027-01-01T00:00:00+01:00"},
        headers=world.headers["admin"],
    )
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"start"}

    response = client.get(
        SHIFTS,
        query_string={"start": "2027-02-01T00:00:00", "end": "2027-01-01T00:00:00"},
        headers=world.headers["admin"],
    )
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"end"}


@pytest.mark.parametrize(
    ("query", "field"),
    [({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"offset": -1}, "offset")],
)
def test_list_refuses_a_bad_page(client, world, query, field):
    response = client.get(SHIFTS, query_string=query, headers=world.headers["admin"])
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {field}
    with pytest.raises(ValidationFailed) as err:
        list_shifts(world.admin, **query)
    assert set(err.value.fields) == {field}


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"], ids=["nul", "surrogate"])
def test_an_unstorable_note_is_named(client, world, bad):
    response = post(client, world, body(world, note=bad))
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"note"}
    assert shift_count() == 0


def test_a_doctor_sees_only_own_shifts(client, world):
    colleague = f.make_user(world.circle, "doctor")
    mine = future_shift(world)
    future_shift(world, doctor=colleague)

    response = client.get(SHIFTS, headers=world.headers["doctor"])
    assert response.status_code == 200
    assert [s["id"] for s in response.get_json()["items"]] == [mine.id]

    response = client.get(
        SHIFTS, query_string={"doctor_id": colleague.id}, headers=world.headers["doctor"]
    )
    assert response.status_code == 404


def test_other_circle_zone_and_shift_are_not_found(client, world, other_world):
    theirs = future_shift(other_world)
    admin = world.headers["admin"]

    assert (
        client.patch(f"{SHIFTS}/{theirs.id}", json={"note": "x"}, headers=admin).status_code == 404
    )
    assert client.delete(f"{SHIFTS}/{theirs.id}", headers=admin).status_code == 404
    assert (
        client.get(SHIFTS, query_string={"zone_id": other_world.zone.id}, headers=admin).status_code
        == 404
    )
    assert (
        client.get(
            SHIFTS, query_string={"doctor_id": other_world.doctor.id}, headers=admin
        ).status_code
        == 404
    )
    response = client.get(
        "/api/v1/on-duty", query_string={"zone": other_world.zone.id}, headers=admin
    )
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "zone_not_found"
    assert client.get(SHIFTS, headers=admin).get_json()["items"] == []
    db.session.expire_all()
    assert db.session.get(Shift, theirs.id).note is None


def test_ids_beyond_the_column_range_are_not_found(client, world):
    admin = world.headers["admin"]
    assert client.delete(f"{SHIFTS}/{2**40}", headers=admin).status_code == 404
    assert client.patch(f"{SHIFTS}/{2**40}", json={}, headers=admin).status_code == 404


# ------------------------------------------------------------------------------ roles


@pytest.mark.parametrize("role", ["dispatcher", "coordinator", "doctor"])
def test_only_admins_change_the_rota(client, world, role):
    shift = future_shift(world)
    headers = world.headers[role]

    assert post(client, world, body(world), role=role).status_code == 403
    assert (
        client.patch(f"{SHIFTS}/{shift.id}", json={"note": "x"}, headers=headers).status_code == 403
    )
    assert client.delete(f"{SHIFTS}/{shift.id}", headers=headers).status_code == 403
    assert shift_count() == 1
    with pytest.raises(Forbidden):
        create_shift(getattr(world, role), body(world), utcnow())


def test_doctors_do_not_query_on_duty(client, world):
    response = client.get(
        "/api/v1/on-duty", query_string={"zone": world.zone.id}, headers=world.headers["doctor"]
    )
    assert response.status_code == 403
    with pytest.raises(Forbidden):
        who_is_on_duty(world.doctor, world.zone.id, utcnow())


def test_anonymous_is_refused(client, world):
    assert client.get(SHIFTS).status_code == 401
    assert client.post(SHIFTS, json=body(world)).status_code == 401
    assert shift_count() == 0


# ----------------------------------------------------------------- on duty, default now


def test_on_duty_defaults_to_now(client, world):
    now = utcnow()
    running = f.make_shift(
        world.zone, world.doctor, now - timedelta(hours=1), now + timedelta(hours=1)
    )
    response = client.get(
        "/api/v1/on-duty",
        query_string={"zone": world.zone.id},
        headers=world.headers["coordinator"],
    )
    assert response.status_code == 200
    data = response.get_json()
    assert [d["shift_id"] for d in data["doctors"]] == [running.id]
    at = datetime.fromisoformat(data["at"])
    assert abs(at - now) < timedelta(minutes=1)
    assert at.utcoffset() == timedelta(0)


def test_on_duty_skips_deactivated_doctors(client, world):
    now = utcnow()
    gone = f.make_user(world.circle, "doctor", active=False)
    f.make_shift(world.zone, gone, now - timedelta(hours=1), now + timedelta(hours=1))
    data = who_is_on_duty(world.admin, world.zone.id, now)
    assert data["doctors"] == []


# ------------------------------------------------------------------ the rota is a record


def test_update_a_future_shift(client, world):
    shift = future_shift(world)
    colleague = f.make_user(world.circle, "doctor")
    response = client.patch(
        f"{SHIFTS}/{shift.id}",
        json={
            "doctor_id": colleague.id,
            "ends_at": "2027-03-28T08:00:00",
            "starts_at": "2027-03-27T20:00:00",
            "note": "swap",
        },
        headers=world.headers["admin"],
    )
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["doctor_id"] == colleague.id
    assert data["starts_at"] == "2027-03-27T19:00:00+00:00"
    assert data["ends_at_local"] == "2027-03-28T08:00:00+02:00"
    assert data["note"] == "swap"
    events = db.session.scalars(
        select(TimelineEvent).where(
            TimelineEvent.subject_type == "shift", TimelineEvent.kind == "shift_updated"
        )
    ).all()
    assert len(events) == 1
    assert set(events[0].data["changes"]) == {"doctor_id", "starts_at", "ends_at", "note"}


def test_update_is_validated_field_by_field(client, world):
    shift = future_shift(world)
    response = client.patch(
        f"{SHIFTS}/{shift.id}",
        json={"doctor_id": world.coordinator.id, "ends_at": "2027-10-31T02:30:00"},
        headers=world.headers["admin"],
    )
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"doctor_id", "ends_at"}
    db.session.expire_all()
    assert db.session.get(Shift, shift.id).doctor_id == world.doctor.id


def test_ended_shifts_can_be_neither_edited_nor_deleted(client, world):
    now = utcnow()
    ended = f.make_shift(
        world.zone, world.doctor, now - timedelta(hours=13), now - timedelta(hours=1)
    )
    admin = world.headers["admin"]

    response = client.patch(f"{SHIFTS}/{ended.id}", json={"note": "late"}, headers=admin)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "shift_in_past"
    response = client.delete(f"{SHIFTS}/{ended.id}", headers=admin)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "shift_in_past"
    assert shift_count() == 1


def test_a_running_shift_may_only_be_ended_or_annotated(client, world):
    now = utcnow().replace(microsecond=0)
    running = f.make_shift(
        world.zone, world.doctor, now - timedelta(hours=2), now + timedelta(hours=6)
    )
    colleague = f.make_user(world.circle, "doctor")
    admin = world.headers["admin"]

    response = client.patch(
        f"{SHIFTS}/{running.id}", json={"doctor_id": colleague.id}, headers=admin
    )
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "shift_started"
    assert set(error["fields"]) == {"doctor_id"}

    response = client.delete(f"{SHIFTS}/{running.id}", headers=admin)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "shift_started"

    new_end = (now + timedelta(hours=1)).isoformat()
    response = client.patch(
        f"{SHIFTS}/{running.id}", json={"ends_at": new_end, "note": "sick"}, headers=admin
    )
    assert response.status_code == 200
    assert datetime.fromisoformat(response.get_json()["ends_at"]) == now + timedelta(hours=1)
    assert shift_count() == 1


def test_delete_a_future_shift(client, world):
    shift = future_shift(world)
    response = client.delete(f"{SHIFTS}/{shift.id}", headers=world.headers["admin"])
    assert response.status_code == 204
    assert response.get_data() == b""
    assert shift_count() == 0
    kinds = db.session.scalars(
        select(TimelineEvent.kind).where(TimelineEvent.subject_id == shift.id)
    ).all()
    assert kinds == ["shift_deleted"]


def test_services_take_now_as_a_parameter(world):
    """The same shift is editable before it ends and a record afterwards."""
    start = datetime(2026, 6, 1, 6, tzinfo=UTC)
    shift = f.make_shift(world.zone, world.doctor, start, start + timedelta(hours=12))
    before = start - timedelta(days=1)
    after = start + timedelta(hours=13)

    assert update_shift(world.admin, shift.id, {"note": "ok"}, before).note == "ok"
    with pytest.raises(Conflict, match="record") as err:
        delete_shift(world.admin, shift.id, after)
    assert err.value.code == "shift_in_past"
    delete_shift(world.admin, shift.id, before)
    assert shift_count() == 0


def test_shift_writes_of_one_doctor_run_one_at_a_time(world):
    """Creating a shift row-locks the doctor, so two overlap checks cannot interleave."""
    data = {
        "zone_id": world.zone.id,
        "doctor_id": world.doctor.id,
        **{k: datetime.fromisoformat(v) for k, v in NIGHT.items()},
    }
    with db.engine.connect() as other:
        other.execute(
            text("SELECT id FROM users WHERE id = :id FOR NO KEY UPDATE"), {"id": world.doctor.id}
        )
        db.session.execute(text("SET LOCAL lock_timeout = '100ms'"))
        with pytest.raises(OperationalError, match="lock timeout"):
            create_shift(world.admin, data, utcnow())
        other.rollback()
    assert shift_count() == 0
    assert create_shift(world.admin, data, utcnow()).doctor_id == world.doctor.id
