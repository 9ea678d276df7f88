"""HTTP API of the accounts domain: tokens, users and the current user."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response, request

from oncall.accounts import services
from oncall.accounts.auth import current_user, require
from oncall.accounts.models import User
from oncall.accounts.schemas import (
    CodesIn,
    CodesOut,
    MeOut,
    MeUpdateIn,
    TokenCreatedOut,
    TokenCreateIn,
    TokenPage,
    TokenQuery,
    UserCreateIn,
    UserOut,
    UserPage,
    UserQuery,
    UserUpdateIn,
)
from oncall.core.clock import utcnow

bp = APIBlueprint("accounts", __name__, tag="Accounts")

#: The user fields ``MeOut`` shows as they are; ``codes_set`` is worked out.
_ME_FIELDS = tuple(name for name in MeOut().fields if name != "codes_set")


def _me(user: User) -> dict[str, Any]:
    """The current user as ``MeOut``: whether codes are set, never the codes' hashes."""
    out = {name: getattr(user, name) for name in _ME_FIELDS}
    out["codes_set"] = user.codes_set_at is not None
    return out


@bp.post("/auth/tokens")
@bp.input(TokenCreateIn, arg_name="data")
@bp.output(TokenCreatedOut, status_code=201)
@bp.doc(
    summary="Log in with email and password; get a bearer token",
    description="Rate-limited per email and per client address (429 with Retry-After).",
)
def create_token(data: dict[str, Any]) -> Any:
    token, row = services.create_token(
        data["email"], data["password"], data.get("label"), request.remote_addr, utcnow()
    )
    return {
        "id": row.id,
        "token": token,
        "prefix": row.prefix,
        "label": row.label,
        "expires_at": row.expires_at,
    }


@bp.get("/auth/tokens")
@require()
@bp.input(TokenQuery, location="query", arg_name="query")
@bp.output(TokenPage)
@bp.doc(summary="List one's bearer tokens, newest first (never the token itself)")
def list_tokens(query: dict[str, Any]) -> Any:
    return services.list_tokens(
        current_user(), query.get("user_id"), limit=query["limit"], offset=query["offset"]
    )


@bp.delete("/auth/tokens/<int:token_id>")
@require()
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke a token (one's own; an admin any of the circle)")
def revoke_token(token_id: int) -> Response:
    services.revoke_token(current_user(), token_id, utcnow())
    return Response(status=204)


@bp.get("/me")
@require()
@bp.output(MeOut)
@bp.doc(summary="The current user")
def get_me() -> Any:
    return _me(services.get_me(current_user()))


@bp.patch("/me")
@require()
@bp.input(MeUpdateIn, arg_name="data")
@bp.output(MeOut)
@bp.doc(summary="Change one's name, language, phone, vehicle or password")
def update_me(data: dict[str, Any]) -> Any:
    return _me(services.update_me(current_user(), data, utcnow()))


@bp.put("/me/codes")
@require("doctor")
@bp.input(CodesIn, arg_name="data")
@bp.output(CodesOut)
@bp.doc(
    summary="Set one's check-in code and duress code (doctors)",
    description="Both at once: 4 to 8 digits each, different. The codes are never shown again.",
)
def set_codes(data: dict[str, Any]) -> Any:
    user = services.set_codes(current_user(), data, utcnow())
    return {"codes_set_at": user.codes_set_at}


@bp.get("/users")
@require("admin", "dispatcher", "coordinator")
@bp.input(UserQuery, location="query", arg_name="query")
@bp.output(UserPage)
@bp.doc(summary="Users of the circle, by name")
def list_users(query: dict[str, Any]) -> Any:
    return services.list_users(
        current_user(),
        query.get("role"),
        query.get("active"),
        limit=query["limit"],
        offset=query["offset"],
    )


@bp.post("/users")
@require("admin")
@bp.input(UserCreateIn, arg_name="data")
@bp.output(UserOut, status_code=201)
@bp.doc(summary="Create a user")
def create_user(data: dict[str, Any]) -> Any:
    return services.create_user(current_user(), data, utcnow())


@bp.get("/users/<int:user_id>")
@require("admin", "dispatcher", "coordinator")
@bp.output(UserOut)
@bp.doc(summary="One user")
def get_user(user_id: int) -> Any:
    return services.get_user(current_user(), user_id)


@bp.patch("/users/<int:user_id>")
@require("admin")
@bp.input(UserUpdateIn, arg_name="data")
@bp.output(UserOut)
@bp.doc(summary="Change a user")
def update_user(user_id: int, data: dict[str, Any]) -> Any:
    return services.update_user(current_user(), user_id, data, utcnow())


@bp.post("/users/<int:user_id>/deactivate")
@require("admin")
@bp.output(UserOut)
@bp.doc(summary="Deactivate a user and revoke their tokens")
def deactivate_user(user_id: int) -> Any:
    return services.deactivate_user(current_user(), user_id, utcnow())
