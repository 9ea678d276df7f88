"""HTTP API of the rota domain: shifts and who is on duty."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response

from oncall.accounts.auth import current_user, require
from oncall.core.clock import utcnow
from oncall.rota import services
from oncall.rota.schemas import (
    OnDutyOut,
    OnDutyQuery,
    ShiftIn,
    ShiftOut,
    ShiftPage,
    ShiftPatch,
    ShiftQuery,
)

bp = APIBlueprint("rota", __name__, tag="Rota")


@bp.get("/shifts")
@require()
@bp.input(ShiftQuery, location="query", arg_name="query")
@bp.output(ShiftPage)
@bp.doc(summary="List shifts (by zone, doctor, period); a doctor sees only own shifts")
def list_shifts(query: dict[str, Any]) -> Any:
    return services.list_shifts(
        current_user(),
        zone_id=query.get("zone_id"),
        doctor_id=query.get("doctor_id"),
        start=query.get("start"),
        end=query.get("end"),
        limit=query["limit"],
        offset=query["offset"],
    )


@bp.post("/shifts")
@require("admin")
@bp.input(ShiftIn, arg_name="data")
@bp.output(ShiftOut, status_code=201)
@bp.doc(summary="Create a shift")
def create_shift(data: dict[str, Any]) -> Any:
    return services.create_shift(current_user(), data, utcnow())


@bp.patch("/shifts/<int:shift_id>")
@require("admin")
@bp.input(ShiftPatch, arg_name="data")
@bp.output(ShiftOut)
@bp.doc(summary="Change a shift that has not ended")
def update_shift(shift_id: int, data: dict[str, Any]) -> Any:
    return services.update_shift(current_user(), shift_id, data, utcnow())


@bp.delete("/shifts/<int:shift_id>")
@require("admin")
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a shift that has not started")
def delete_shift(shift_id: int) -> Response:
    services.delete_shift(current_user(), shift_id, utcnow())
    return Response(status=204)


@bp.get("/on-duty")
@require("admin", "dispatcher", "coordinator")
@bp.input(OnDutyQuery, location="query", arg_name="query")
@bp.output(OnDutyOut)
@bp.doc(summary="Who is on duty in a zone at a time (default now)")
def on_duty(query: dict[str, Any]) -> dict[str, Any]:
    return services.who_is_on_duty(current_user(), query["zone"], query.get("at") or utcnow())
