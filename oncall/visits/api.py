"""HTTP API of the visits domain."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from apiflask import APIBlueprint

from oncall.accounts.auth import current_user, require
from oncall.core.clock import utcnow
from oncall.visits import services
from oncall.visits.schemas import (
    AssignIn,
    CancelIn,
    CheckInIn,
    CheckOutIn,
    ExtendIn,
    ItineraryOut,
    ItineraryQuery,
    VisitCreateIn,
    VisitDetailOut,
    VisitListQuery,
    VisitOut,
    VisitPage,
)

bp = APIBlueprint("visits", __name__, tag="Visits")

F = TypeVar("F", bound=Callable[..., Any])


def visible_visit(view: F) -> F:
    """404 for a visit the user may not see, before the body is parsed.

    Goes between ``@require`` and ``@bp.input``: another circle's (or another
    doctor's) visit is not found whatever the request body holds.
    """

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        services.ensure_visible(current_user(), kwargs["visit_id"])
        return view(*args, **kwargs)

    return cast(F, wrapper)


@bp.get("/visits")
@require("dispatcher", "coordinator", "admin", "doctor")
@bp.input(VisitListQuery, location="query", arg_name="query")
@bp.output(VisitPage)
@bp.doc(summary="List visits (by doctor, zone, status, creation period); a doctor sees own only")
def list_visits(query: dict[str, Any]) -> dict[str, Any]:
    return services.list_visits(
        current_user(),
        doctor_id=query.get("doctor_id"),
        zone_id=query.get("zone_id"),
        status=query.get("status"),
        start=query.get("start"),
        end=query.get("end"),
        limit=query["limit"],
        offset=query["offset"],
        now=utcnow(),
    )


@bp.post("/visits")
@require("dispatcher", "admin")
@bp.input(VisitCreateIn, arg_name="data")
@bp.output(VisitOut, status_code=201)
@bp.doc(summary="Create a visit from a call; assigned to the doctor on duty in the zone")
def create_visit(data: dict[str, Any]) -> dict[str, Any]:
    return services.create_visit(current_user(), data, utcnow())


@bp.get("/visits/<int:visit_id>")
@require("dispatcher", "coordinator", "admin", "doctor")
@bp.output(VisitDetailOut)
@bp.doc(summary="One visit with its timeline; a doctor sees own only")
def get_visit(visit_id: int) -> dict[str, Any]:
    return services.get_visit(current_user(), visit_id, utcnow())


@bp.post("/visits/<int:visit_id>/assign")
@require("dispatcher", "coordinator", "admin")
@visible_visit
@bp.input(AssignIn, arg_name="data")
@bp.output(VisitOut)
@bp.doc(summary="Assign to a doctor, reassign, or unassign (doctor_id null, with a reason)")
def assign_visit(visit_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return services.assign_visit(
        current_user(),
        visit_id,
        data["doctor_id"],
        utcnow(),
        reason=data.get("reason"),
        arrive_by=data.get("arrive_by"),
    )


@bp.post("/visits/<int:visit_id>/cancel")
@require("dispatcher", "coordinator", "admin")
@visible_visit
@bp.input(CancelIn, arg_name="data")
@bp.output(VisitOut)
@bp.doc(summary="Cancel an unassigned or assigned visit, with a reason")
def cancel_visit(visit_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return services.cancel_visit(current_user(), visit_id, data["reason"], utcnow())


@bp.post("/visits/<int:visit_id>/check-in")
@require("doctor")
@visible_visit
@bp.input(CheckInIn, arg_name="data")
@bp.output(VisitOut)
@bp.doc(
    summary="The visit's doctor arrives (optional location, code and expected length)",
    description="Meets the arrival deadline and arms the departure deadline.",
)
def check_in(visit_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return services.check_in(
        current_user(),
        visit_id,
        utcnow(),
        location=data.get("location"),
        code=data.get("code"),
        expected_minutes=data.get("expected_minutes"),
    )


@bp.post("/visits/<int:visit_id>/extend")
@require("doctor")
@visible_visit
@bp.input(ExtendIn, arg_name="data")
@bp.output(VisitOut)
@bp.doc(summary="The visit's doctor needs longer: the departure deadline moves later")
def extend_visit(visit_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return services.extend_visit(current_user(), visit_id, utcnow(), minutes=data.get("minutes"))


@bp.post("/visits/<int:visit_id>/check-out")
@require("doctor")
@visible_visit
@bp.input(CheckOutIn, arg_name="data")
@bp.output(VisitOut)
@bp.doc(
    summary="The visit's doctor leaves (optional outcome note, location and code)",
    description="Meets the departure deadline.",
)
def check_out(visit_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return services.check_out(
        current_user(),
        visit_id,
        utcnow(),
        outcome_note=data.get("note"),
        location=data.get("location"),
        code=data.get("code"),
    )


@bp.get("/doctors/<int:doctor_id>/itinerary")
@require("dispatcher", "coordinator", "admin", "doctor")
@bp.input(ItineraryQuery, location="query", arg_name="query")
@bp.output(ItineraryOut)
@bp.doc(summary="A doctor's visits in order for the current shift; a doctor reads own only")
def itinerary(doctor_id: int, query: dict[str, Any]) -> dict[str, Any]:
    return services.itinerary(
        current_user(), doctor_id, utcnow(), start=query.get("start"), end=query.get("end")
    )
