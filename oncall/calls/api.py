"""HTTP API of the calls domain: the telephone webhook, the call log, caller history."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from oncall.accounts.auth import current_user, require
from oncall.calls import services
from oncall.calls.schemas import (
    CallCreateIn,
    CallerHistoryOut,
    CallOut,
    CallPage,
    CallQuery,
    CallUpdateIn,
    TelephonyAck,
    TelephonyEventIn,
    TelephonyHeaders,
)
from oncall.calls.telephony import current_circle, telephony_signed
from oncall.core.clock import utcnow

bp = APIBlueprint("calls", __name__, tag="Calls")

_TELEPHONY_DESCRIPTION = """\
Called by the circle's telephone system for each ringing, answered and ended event.

Authentication is a signature, not a user: send `X-Oncall-Circle` (the circle's id),
`X-Oncall-Timestamp` (Unix seconds) and `X-Oncall-Signature`
(`sha256=` followed by the hex HMAC-SHA256 of `<timestamp>.<raw body>` keyed with the
circle's telephony secret). A timestamp too far from now, a wrong signature or an
unknown circle answers 401 `bad_signature`.

The first event of a `call_ref` creates the call, in whatever order events arrive.
Sending the same event again changes nothing and answers the same call.
"""


@bp.post("/telephony/events")
@telephony_signed
@bp.input(TelephonyHeaders, location="headers", arg_name="headers")
@bp.input(TelephonyEventIn, arg_name="data")
@bp.output(TelephonyAck)
@bp.doc(summary="Receive a telephone-system event", description=_TELEPHONY_DESCRIPTION)
def telephony_event(headers: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    call = services.record_telephony_event(current_circle(), data, utcnow())
    return {"call_id": call.id, "state": call.state}


@bp.get("/calls")
@require("dispatcher", "coordinator", "admin")
@bp.input(CallQuery, location="query", arg_name="query")
@bp.output(CallPage)
@bp.doc(summary="List calls, newest first")
def list_calls(query: dict[str, Any]) -> dict[str, Any]:
    return services.list_calls(current_user(), utcnow(), **query)


@bp.post("/calls")
@require("dispatcher", "admin")
@bp.input(CallCreateIn, arg_name="data")
@bp.output(CallOut, status_code=201)
@bp.doc(summary="Log a call by hand")
def create_call(data: dict[str, Any]) -> dict[str, Any]:
    return services.create_call(current_user(), data, utcnow())


@bp.get("/calls/<int:call_id>")
@require("dispatcher", "coordinator", "admin")
@bp.output(CallOut)
@bp.doc(summary="Get a call")
def get_call(call_id: int) -> dict[str, Any]:
    return services.get_call(current_user(), call_id, utcnow())


@bp.patch("/calls/<int:call_id>")
@require("dispatcher", "admin")
@bp.input(CallUpdateIn, arg_name="data")
@bp.output(CallOut)
@bp.doc(summary="Update a call (patient, address, checklist, outcome...)")
def update_call(call_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return services.update_call(current_user(), call_id, data, utcnow())


@bp.get("/callers/<path:number>")
@require("dispatcher", "coordinator", "admin")
@bp.output(CallerHistoryOut)
@bp.doc(
    summary="A caller's history of calls and visits",
    description="`number` in any usual form (URL-encode `+` as `%2B`); read with the "
    "circle's country.",
)
def caller_history(number: str) -> dict[str, Any]:
    return services.caller_history(current_user(), number, utcnow())
