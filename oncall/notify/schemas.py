"""Input and output schemas of the notifications API: channels, the webhook secret, the stream."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Integer, Nested, String
from apiflask.validators import Length, OneOf, Range

from oncall.core.paging import PageQuery, envelope_schema
from oncall.core.text import storable
from oncall.notify.models import CHANNEL_KINDS

_ID = Range(min=1, max=2**31 - 1)
#: Stream event ids are BIGINT.
_EVENT_ID = Range(min=0, max=2**63 - 1)
_ADDRESS_HELP = (
    "email: an email address; sms: a phone number (national numbers are read in the "
    "circle's country, stored as E.164); webhook: an https URL (plain http only to "
    "localhost)."
)


class ChannelOut(Schema):
    id = Integer(required=True)
    kind = String(required=True, validate=OneOf(CHANNEL_KINDS))
    address = String(required=True)
    label = String(required=True, allow_none=True)
    active = Boolean(required=True)
    user_id = Integer(required=True, allow_none=True)
    police_contact_id = Integer(required=True, allow_none=True)
    created_at = DateTime(required=True)
    updated_at = DateTime(required=True)


ChannelPage = envelope_schema(ChannelOut, "NotificationChannelPage")


class ChannelQuery(PageQuery):
    user_id = Integer(validate=_ID, metadata={"description": "One user's channels."})
    police_contact_id = Integer(
        validate=_ID, metadata={"description": "One police contact's channels (admin only)."}
    )
    kind = String(validate=OneOf(CHANNEL_KINDS))
    active = Boolean()


class ChannelCreateIn(Schema):
    kind = String(required=True, validate=OneOf(CHANNEL_KINDS))
    address = String(required=True, validate=[Length(min=1, max=500), storable],
                     metadata={"description": _ADDRESS_HELP})
    label = String(allow_none=True, validate=[Length(max=80), storable])
    active = Boolean()
    user_id = Integer(
        allow_none=True,
        validate=_ID,
        metadata={"description": "The user told on this channel; default: oneself."},
    )
    police_contact_id = Integer(
        allow_none=True,
        validate=_ID,
        metadata={"description": "The police contact told on this channel (admin only)."},
    )


class ChannelUpdateIn(Schema):
    address = String(validate=[Length(min=1, max=500), storable],
                     metadata={"description": _ADDRESS_HELP})
    label = String(allow_none=True, validate=[Length(max=80), storable])
    active = Boolean()


class WebhookHeadersOut(Schema):
    timestamp = String(required=True, metadata={"description": "Unix seconds of the sending."})
    signature = String(required=True,
                       metadata={"description": "signature_prefix + hex HMAC of `signed`."})
    idempotency_key = String(required=True,
                             metadata={"description": "The same for every retry of a message."})
    message_id = String(required=True)
    attempt = String(required=True, metadata={"description": "1 for the first attempt."})


class WebhookSecretOut(Schema):
    secret = String(required=True, metadata={"description": "The circle's signing secret."})
    algorithm = String(required=True)
    signed = String(required=True, metadata={"description": "What the HMAC is computed over."})
    signature_prefix = String(required=True)
    max_skew_seconds = Integer(
        required=True, metadata={"description": "Refuse timestamps further than this from now."}
    )
    headers = Nested(WebhookHeadersOut, required=True)


class StreamQuery(Schema):
    last_event_id = Integer(
        validate=_EVENT_ID,
        metadata={"description": "Replay the events after this id (the Last-Event-ID "
                                 "header wins when both are given)."},
    )


class StreamHeaders(Schema):
    last_event_id = Integer(
        data_key="Last-Event-ID",
        validate=_EVENT_ID,
        metadata={"description": "Sent by EventSource on reconnection: replay what followed."},
    )
