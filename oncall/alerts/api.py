"""HTTP API of the alerts domain: the panic button, the alerts, the police briefing."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from apiflask import APIBlueprint
from flask import Response, render_template, request

from oncall.accounts.auth import current_user, require
from oncall.alerts import services
from oncall.alerts.schemas import (
    AlertDetailOut,
    AlertListQuery,
    AlertOut,
    AlertPage,
    BriefingOut,
    BriefingQuery,
    PanicCancelIn,
    PanicCancelOut,
    PanicIn,
    PanicOut,
    ResolveIn,
)
from oncall.core.clock import utcnow

bp = APIBlueprint("alerts", __name__, tag="Alerts", template_folder="templates")

F = TypeVar("F", bound=Callable[..., Any])

#: The printable briefing holds patient data: never cached, nothing loaded from elsewhere.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

#: The briefing's other 200 answer, declared next to the JSON one.
_HTML_PAGE: dict[int | str, dict[str, str | dict[str, dict[str, Any]]]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}}
}


def visible_alert(view: F) -> F:
    """404 for an alert the user may not see, before the body is parsed.

    Goes between ``@require`` and ``@bp.input``: another circle's alert (or, for a
    doctor, anything but their own panic) is not found whatever the body holds.
    """

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        services.ensure_visible(current_user(), kwargs["alert_id"])
        return view(*args, **kwargs)

    return cast(F, wrapper)


@bp.post("/panic")
@require("doctor")
@bp.input(PanicIn, arg_name="data")
@bp.output(PanicOut, status_code=201)
@bp.doc(summary="The doctor's panic button: tells the coordinators and the police at once")
def press_panic(data: dict[str, Any]) -> dict[str, Any]:
    return services.panic(
        current_user(), utcnow(), visit_id=data.get("visit_id"), location=data.get("location")
    )


@bp.post("/panic/<int:alert_id>/cancel")
@require("doctor")
@visible_alert
@bp.input(PanicCancelIn, arg_name="data")
@bp.output(PanicCancelOut)
@bp.doc(summary="The doctor cancels their own panic with their code")
def cancel_panic(alert_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return services.cancel_panic(current_user(), alert_id, data["code"], utcnow())


@bp.get("/alerts")
@require("dispatcher", "coordinator", "admin")
@bp.input(AlertListQuery, location="query", arg_name="query")
@bp.output(AlertPage)
@bp.doc(summary="List alerts: open and acknowledged first, then resolved; newest first")
def list_alerts(query: dict[str, Any]) -> dict[str, Any]:
    return services.list_alerts(
        current_user(),
        status=query.get("status"),
        kind=query.get("kind"),
        visit_id=query.get("visit_id"),
        doctor_id=query.get("doctor_id"),
        limit=query["limit"],
        offset=query["offset"],
        now=utcnow(),
    )


@bp.get("/alerts/<int:alert_id>")
@require("dispatcher", "coordinator", "admin")
@bp.output(AlertDetailOut)
@bp.doc(summary="One alert with its policy, timeline, fired steps and deliveries")
def get_alert(alert_id: int) -> dict[str, Any]:
    return services.get_alert(current_user(), alert_id, utcnow())


@bp.post("/alerts/<int:alert_id>/acknowledge")
@require("coordinator", "admin")
@bp.output(AlertOut)
@bp.doc(summary="Take charge of the alert; a later caller sees who did")
def acknowledge(alert_id: int) -> dict[str, Any]:
    return services.acknowledge(current_user(), alert_id, utcnow())


@bp.post("/alerts/<int:alert_id>/escalate")
@require("coordinator", "admin")
@bp.output(AlertOut)
@bp.doc(summary="Go to the police step now")
def escalate(alert_id: int) -> dict[str, Any]:
    return services.escalate(current_user(), alert_id, utcnow())


@bp.post("/alerts/<int:alert_id>/resolve")
@require("coordinator", "admin")
@visible_alert
@bp.input(ResolveIn, arg_name="data")
@bp.output(AlertOut)
@bp.doc(summary="Close the alert with a note; the police already told are stood down")
def resolve(alert_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return services.resolve(current_user(), alert_id, data.get("note"), utcnow())


def _wants_html(query: dict[str, Any]) -> bool:
    """``?format=html``, or (without ``format``) an Accept header preferring text/html."""
    if query.get("format"):
        return bool(query["format"] == "html")
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


@bp.get("/alerts/<int:alert_id>/briefing")
@require("dispatcher", "coordinator", "admin")
@bp.input(BriefingQuery, location="query", arg_name="query")
@bp.output(BriefingOut)
@bp.doc(
    summary="The police briefing: JSON, or a printable page (?format=html or Accept: text/html)",
    responses=_HTML_PAGE,
)
def briefing(alert_id: int, query: dict[str, Any]) -> Any:
    actor = current_user()
    now = utcnow()
    data = services.get_briefing(actor, alert_id, now)
    if not _wants_html(query):
        return data, 200, {"Cache-Control": "no-store"}
    page = services.printable_briefing(actor, data, now)
    html = render_template("alerts/briefing.html", page=page, L=page["labels"])
    return Response(html, status=200, mimetype="text/html", headers=_PAGE_HEADERS)
