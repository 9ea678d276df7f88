"""HTTP API of the notifications domain: notification channels, the webhook secret and
the consoles' live stream."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response, current_app, g, request

from oncall.accounts.auth import current_user, hash_token, require
from oncall.core.clock import utcnow
from oncall.notify import live, services
from oncall.notify.schemas import (
    ChannelCreateIn,
    ChannelOut,
    ChannelPage,
    ChannelQuery,
    ChannelUpdateIn,
    StreamHeaders,
    StreamQuery,
    WebhookSecretOut,
)

bp = APIBlueprint("notify", __name__, tag="Notifications")


@bp.get("/notification-channels")
@require()
@bp.input(ChannelQuery, location="query", arg_name="query")
@bp.output(ChannelPage)
@bp.doc(summary="Notification channels: an admin's of the whole circle, anyone else's own")
def list_channels(query: dict[str, Any]) -> Any:
    return services.list_channels(
        current_user(),
        query.get("user_id"),
        query.get("police_contact_id"),
        query.get("kind"),
        query.get("active"),
        limit=query["limit"],
        offset=query["offset"],
    )


@bp.post("/notification-channels")
@require()
@bp.input(ChannelCreateIn, arg_name="data")
@bp.output(ChannelOut, status_code=201)
@bp.doc(
    summary="Add a notification channel (one's own; an admin's for anyone of the circle)",
    description="At most 10 active channels per person (409 `too_many_channels`).",
)
def create_channel(data: dict[str, Any]) -> Any:
    return services.create_channel(current_user(), data, utcnow())


@bp.get("/notification-channels/webhook-secret")
@require("admin")
@bp.output(WebhookSecretOut)
@bp.doc(
    summary="The circle's webhook signing secret, for whoever runs a receiving end",
    description="Every read is recorded on the circle's timeline.",
)
def get_webhook_secret() -> Any:
    return services.webhook_secret(current_user(), utcnow()), 200, {"Cache-Control": "no-store"}


@bp.patch("/notification-channels/<int:channel_id>")
@require()
@bp.input(ChannelUpdateIn, arg_name="data")
@bp.output(ChannelOut)
@bp.doc(summary="Change a channel's address, label or active flag")
def update_channel(channel_id: int, data: dict[str, Any]) -> Any:
    return services.update_channel(current_user(), channel_id, data, utcnow())


@bp.delete("/notification-channels/<int:channel_id>")
@require()
@bp.output({}, status_code=204)
@bp.doc(
    summary="Deactivate a channel",
    description="The channel is kept, inactive, because past messages refer to it.",
)
def delete_channel(channel_id: int) -> Response:
    services.deactivate_channel(current_user(), channel_id, utcnow())
    return Response(status=204)


_STREAM_DESCRIPTION = """Server-sent events of the circle for the consoles.

Each message is `id: <event id>`, `event: <kind>` and one `data:` line of JSON
`{subject_type, subject_id, at, data}`. A connection without `Last-Event-ID`
starts with `event: hello` (`{last_id, reload}`): load the state, then apply what
follows. With `Last-Event-ID` (header, or `last_event_id` in the query) the events
after it are replayed first; when too many were missed, `hello` comes with
`reload: true` instead. A `: keep-alive` comment is sent every 15 seconds; the
server ends the stream after 10 minutes and the client reconnects with
`Last-Event-ID`. Doctors have no stream."""

#: One event of the stream (OpenAPI 3.1: the schema of a text/event-stream describes
#: each event).
_STREAM_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$",
               "description": "The event id; send the last one back as Last-Event-ID."},
        "event": {"type": "string",
                  "description": "`hello`, or what changed (`alert.opened`, `visit.updated`...)."},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "JSON: `{subject_type, subject_id, at, data}`; "
                                "for `hello`: `{last_id, reload}`."},
        "retry": {"type": "integer", "description": "Milliseconds to wait before reconnecting."},
    },
}
_STREAM_RESPONSES: dict[int | str, dict[str, str | dict[str, dict[str, Any]]]] = {
    200: {
        "description": "An event stream",
        "content": {"text/event-stream": {"schema": _STREAM_EVENT}},
    }
}


@bp.get("/stream")
@require(*live.STREAM_ROLES)
@bp.input(StreamQuery, location="query", arg_name="query")
@bp.input(StreamHeaders, location="headers", arg_name="headers")
@bp.doc(
    summary="The consoles' live stream (server-sent events)",
    description=_STREAM_DESCRIPTION,
    responses=_STREAM_RESPONSES,
)
def stream(query: dict[str, Any], headers: dict[str, Any]) -> Response:
    user = current_user()
    last_event_id = headers.get("last_event_id", query.get("last_event_id"))
    viewer = live.Viewer(user.id, user.circle_id, _token_digest())
    body = live.events(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        viewer,
        last_event_id,
        live.Timing.from_config(current_app.config),
        current_app.config["ONCALL"].redis_url,
    )
    # The generator opens an application context for each read of its own (see
    # ``live.events``) rather than keeping the request's context for minutes.
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache, no-store"
    # Proxies (nginx) must pass each event on at once.
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _token_digest() -> str | None:
    """The digest of the request's bearer token, so the stream can check it again later."""
    if getattr(g, "auth_method", None) != "token":
        return None
    _, _, token = request.headers.get("Authorization", "").partition(" ")
    return hash_token(token.strip())
