"""HTTP API of the circles domain: the circle, zones, police contacts, escalation policies."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from oncall.accounts.auth import current_user, require
from oncall.circles import policies, services
from oncall.circles.schemas import (
    CircleOut,
    CircleUpdateIn,
    PoliceContactCreateIn,
    PoliceContactOut,
    PoliceContactPage,
    PoliceContactQuery,
    PoliceContactUpdateIn,
    PolicyIn,
    PolicyOut,
    PolicyPage,
    PolicyQuery,
    ZoneCreateIn,
    ZoneOut,
    ZonePage,
    ZoneQuery,
    ZoneUpdateIn,
)
from oncall.core.clock import utcnow

bp = APIBlueprint("circles", __name__, tag="Circles")


@bp.get("/circle")
@require()
@bp.output(CircleOut)
@bp.doc(summary="The current user's circle")
def get_circle() -> Any:
    return services.get_circle(current_user())


@bp.patch("/circle")
@require("admin")
@bp.input(CircleUpdateIn, arg_name="data")
@bp.output(CircleOut)
@bp.doc(summary="Change the circle's name, time zone, country, deadline settings or police "
                "protocol reference")
def update_circle(data: dict[str, Any]) -> Any:
    return services.update_circle(current_user(), data, utcnow())


@bp.get("/zones")
@require()
@bp.input(ZoneQuery, location="query", arg_name="query")
@bp.output(ZonePage)
@bp.doc(summary="The circle's zones, by name")
def list_zones(query: dict[str, Any]) -> Any:
    return services.list_zones(current_user(), limit=query["limit"], offset=query["offset"])


@bp.post("/zones")
@require("admin")
@bp.input(ZoneCreateIn, arg_name="data")
@bp.output(ZoneOut, status_code=201)
@bp.doc(summary="Create a zone")
def create_zone(data: dict[str, Any]) -> Any:
    return services.create_zone(current_user(), data, utcnow())


@bp.patch("/zones/<int:zone_id>")
@require("admin")
@bp.input(ZoneUpdateIn, arg_name="data")
@bp.output(ZoneOut)
@bp.doc(summary="Change a zone")
def update_zone(zone_id: int, data: dict[str, Any]) -> Any:
    return services.update_zone(current_user(), zone_id, data, utcnow())


@bp.get("/police-contacts")
@require("admin", "coordinator", "dispatcher")
@bp.input(PoliceContactQuery, location="query", arg_name="query")
@bp.output(PoliceContactPage)
@bp.doc(summary="The circle's police contacts, circle-wide first, then by zone and name")
def list_police_contacts(query: dict[str, Any]) -> Any:
    return services.list_police_contacts(
        current_user(), query.get("zone_id"), limit=query["limit"], offset=query["offset"]
    )


@bp.post("/police-contacts")
@require("admin")
@bp.input(PoliceContactCreateIn, arg_name="data")
@bp.output(PoliceContactOut, status_code=201)
@bp.doc(summary="Create a police contact (for a zone or circle-wide)")
def create_police_contact(data: dict[str, Any]) -> Any:
    return services.create_police_contact(current_user(), data, utcnow())


@bp.patch("/police-contacts/<int:contact_id>")
@require("admin")
@bp.input(PoliceContactUpdateIn, arg_name="data")
@bp.output(PoliceContactOut)
@bp.doc(summary="Change a police contact")
def update_police_contact(contact_id: int, data: dict[str, Any]) -> Any:
    return services.update_police_contact(current_user(), contact_id, data, utcnow())


@bp.get("/escalation-policies")
@require("admin", "coordinator")
@bp.input(PolicyQuery, location="query", arg_name="query")
@bp.output(PolicyPage)
@bp.doc(summary="The escalation policy of every alert kind")
def list_policies(query: dict[str, Any]) -> Any:
    return policies.list_policies(current_user(), limit=query["limit"], offset=query["offset"])


@bp.get("/escalation-policies/<kind>")
@require("admin", "coordinator")
@bp.output(PolicyOut)
@bp.doc(summary="The escalation policy of one alert kind")
def get_policy(kind: str) -> Any:
    return policies.get_policy(current_user(), kind)


@bp.put("/escalation-policies/<kind>")
@require("admin")
@bp.input(PolicyIn, arg_name="data")
@bp.output(PolicyOut)
@bp.doc(summary="Replace the steps of one alert kind's escalation policy")
def replace_policy(kind: str, data: dict[str, Any]) -> Any:
    return policies.replace_policy(current_user(), kind, data["steps"], utcnow())
