"""HTTP API of the accounts domain: tokens, users and the current user."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response, request

from oncall.accounts import services
from oncall.accounts.auth import current_user, require
from oncall.accounts.schemas import (
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
    return services.get_me(current_user())


@bp.patch("/me")
@require()
@bp.input(MeUpdateIn, arg_name="data")
@bp.output(MeOut)
@bp.doc(summary="Change one's name, language, phone, vehicle or password")
def update_me(data: dict[str, Any]) -> Any:
    return services.update_me(current_user(), data, utcnow())


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
