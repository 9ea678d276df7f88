"""Input and output schemas of the accounts API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Email, Integer, String
from apiflask.validators import Length, OneOf, Range, Regexp

from oncall.accounts.models import LANGUAGES, ROLES
from oncall.core.paging import PageQuery, envelope_schema
from oncall.core.text import storable

_PASSWORD: list[Callable[[Any], Any]] = [Length(min=1, max=1024), storable]


class TokenCreateIn(Schema):
    email = String(required=True, validate=[Length(min=1, max=254), storable])
    password = String(required=True, validate=_PASSWORD)
    label = String(allow_none=True, validate=[Length(max=80), storable])


class TokenCreatedOut(Schema):
    id = Integer(required=True)
    token = String(required=True, metadata={"description": "Shown once; keep it secret."})
    prefix = String(required=True)
    label = String(allow_none=True)
    expires_at = DateTime(required=True)


class TokenOut(Schema):
    id = Integer(required=True)
    user_id = Integer(required=True)
    prefix = String(required=True)
    label = String(allow_none=True)
    created_at = DateTime(required=True)
    expires_at = DateTime(required=True)
    last_used_at = DateTime(allow_none=True)
    revoked_at = DateTime(allow_none=True)


class TokenQuery(PageQuery):
    user_id = Integer(validate=Range(min=1, max=2**31 - 1),
                      metadata={"description": "Another user's tokens (admin only)."})


class UserOut(Schema):
    id = Integer(required=True)
    email = String(required=True)
    name = String(required=True)
    role = String(required=True, validate=OneOf(ROLES))
    phone = String(allow_none=True)
    language = String(required=True, validate=OneOf(LANGUAGES))
    active = Boolean(required=True)
    vehicle_make = String(allow_none=True)
    vehicle_colour = String(allow_none=True)
    vehicle_plate = String(allow_none=True)
    created_at = DateTime(required=True)
    deactivated_at = DateTime(allow_none=True)


TokenPage = envelope_schema(TokenOut, "TokenPage")
UserPage = envelope_schema(UserOut, "UserPage")


class MeOut(UserOut):
    circle_id = Integer(required=True)
    codes_set = Boolean(
        required=True,
        metadata={"description": "True once the doctor has set a check-in and a duress code."},
    )


_CODE = Regexp(r"^[0-9]{4,8}$", error="4 to 8 digits.")


class CodesIn(Schema):
    checkin_code = String(
        required=True, validate=_CODE,
        metadata={"description": "Given with a check-in or check-out: all is well."},
    )
    duress_code = String(
        required=True, validate=_CODE,
        metadata={"description": "Given instead under duress: the visit goes on as usual and a "
                  "silent alert reaches the coordinators and the police. Must differ from "
                  "the check-in code."},
    )


class CodesOut(Schema):
    codes_set_at = DateTime(required=True)


class UserQuery(PageQuery):
    role = String(validate=OneOf(ROLES))
    active = Boolean()


class _UserFields(Schema):
    name = String(validate=[Length(min=1, max=120), storable])
    phone = String(allow_none=True, validate=[Length(max=32), storable])
    language = String(validate=OneOf(LANGUAGES))
    vehicle_make = String(allow_none=True, validate=[Length(max=60), storable])
    vehicle_colour = String(allow_none=True, validate=[Length(max=40), storable])
    vehicle_plate = String(allow_none=True, validate=[Length(max=20), storable])


class UserCreateIn(_UserFields):
    email = Email(required=True, validate=[Length(max=254), storable])
    name = String(required=True, validate=[Length(min=1, max=120), storable])
    role = String(required=True, validate=OneOf(ROLES))
    password = String(required=True, validate=[Length(min=10, max=1024), storable])


class UserUpdateIn(_UserFields):
    email = Email(validate=[Length(max=254), storable])
    role = String(validate=OneOf(ROLES))
    password = String(validate=[Length(min=10, max=1024), storable],
                      metadata={"description": "A new password set by the admin."})


class MeUpdateIn(_UserFields):
    password = String(validate=[Length(min=10, max=1024), storable])
    current_password = String(validate=_PASSWORD,
                              metadata={"description": "Needed with a new password."})
