"""The one definition of the patient, address and checklist objects of the API.

Calls and visits both carry them (see :class:`oncall.core.patient.PatientColumns`),
so both use these schemas: in the OpenAPI document they are the components
``PatientInput`` / ``Patient``, ``AddressInput`` / ``Address`` and
``PreparationInput`` / ``Preparation``. Every input field is optional and may be
null (which clears it); the limits are the columns' sizes. Rules that need the
circle (phone numbers, postcodes, today's date) are in
:func:`oncall.calls.checks.check_details`, which loads the nested objects with
:func:`load_details` first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apiflask import Schema
from apiflask.fields import Boolean, Date, Integer, String
from apiflask.validators import Length, OneOf, Range, Regexp
from marshmallow import ValidationError

from oncall.core.patient import (
    ADDRESS_LIMITS,
    CALLER_RELATIONS,
    DWELLINGS,
    MAX_AGE,
    PATIENT_LIMITS,
)
from oncall.core.text import storable
from oncall.errors import Validator

#: What a phone number may look like before it is read (digits and the usual separators).
PHONE_PATTERN = r"^\+?[0-9 ()./-]{3,31}$"


class WholeMatch(Regexp):
    """A :class:`Regexp` that must match the whole value (``$`` lets a final newline by)."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


def storable_text(max_length: int, *, min_length: int = 0, **kwargs: Any) -> String:
    """A string field bounded in length and storable as it is."""
    return String(validate=[Length(min=min_length, max=max_length), storable], **kwargs)


def _optional_text(max_length: int) -> String:
    return storable_text(max_length, allow_none=True)


def _optional_flag() -> Boolean:
    return Boolean(allow_none=True)


# --- input -------------------------------------------------------------------


class PatientInput(Schema):
    """The patient as the caller describes them; a field sent as null is cleared."""

    name = _optional_text(PATIENT_LIMITS["name"])
    age = Integer(strict=True, allow_none=True, validate=Range(min=0, max=MAX_AGE))
    birth_date = Date(allow_none=True, metadata={"description": "Must agree with the age"})
    phone = String(
        allow_none=True,
        validate=[
            Length(max=PATIENT_LIMITS["phone"]),
            WholeMatch(PHONE_PATTERN, error="Not a valid phone number."),
        ],
        metadata={"description": "Any usual form; stored as E.164"},
    )
    usual_gp = _optional_text(PATIENT_LIMITS["usual_gp"])


class AddressInput(Schema):
    """Where the patient is; the postcode must have the form of the circle's country."""

    street = _optional_text(ADDRESS_LIMITS["street"])
    number = _optional_text(ADDRESS_LIMITS["number"])
    box = _optional_text(ADDRESS_LIMITS["box"])
    postcode = _optional_text(ADDRESS_LIMITS["postcode"])
    city = _optional_text(ADDRESS_LIMITS["city"])
    floor = _optional_text(ADDRESS_LIMITS["floor"])
    access_notes = _optional_text(ADDRESS_LIMITS["access_notes"])
    dwelling = String(allow_none=True, validate=OneOf(DWELLINGS))


class PreparationInput(Schema):
    """The safety checklist before a home visit."""

    caller_relation = String(allow_none=True, validate=OneOf(CALLER_RELATIONS))
    caller_at_patient_home = _optional_flag()
    new_patient = _optional_flag()
    dogs_secured = _optional_flag()
    outside_light_on = _optional_flag()
    met_at_entrance = _optional_flag()
    third_person_present = _optional_flag()


# --- output ------------------------------------------------------------------


class Patient(Schema):
    name = String(required=True, allow_none=True)
    age = Integer(required=True, allow_none=True)
    birth_date = Date(required=True, allow_none=True)
    phone = String(required=True, allow_none=True, metadata={"description": "E.164 when read"})
    usual_gp = String(required=True, allow_none=True)


class Address(Schema):
    street = String(required=True, allow_none=True)
    number = String(required=True, allow_none=True)
    box = String(required=True, allow_none=True)
    postcode = String(required=True, allow_none=True)
    city = String(required=True, allow_none=True)
    floor = String(required=True, allow_none=True)
    access_notes = String(required=True, allow_none=True)
    dwelling = String(required=True, allow_none=True)


class Preparation(Schema):
    caller_relation = String(required=True, allow_none=True)
    caller_at_patient_home = Boolean(required=True, allow_none=True)
    new_patient = Boolean(required=True, allow_none=True)
    dogs_secured = Boolean(required=True, allow_none=True)
    outside_light_on = Boolean(required=True, allow_none=True)
    met_at_entrance = Boolean(required=True, allow_none=True)
    third_person_present = Boolean(required=True, allow_none=True)


# --- the same checks for a use case called without the API ----------------------

#: Built once: a schema instance is reusable, and building one costs more than a load.
_INPUTS: tuple[tuple[str, Schema], ...] = (
    ("patient", PatientInput()),
    ("address", AddressInput()),
    ("preparation", PreparationInput()),
)


def load_details(
    v: Validator, data: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The ``patient``, ``address`` and ``preparation`` of ``data`` loaded with the input
    schemas: only the fields sent, each valid; problems go to ``v`` as ``patient.age``...

    Loading what the API already loaded gives it back unchanged, so a use case may
    call this whoever called it. A missing or null object is empty.
    """
    loaded: list[dict[str, Any]] = []
    for name, schema in _INPUTS:
        value = data.get(name)
        if value is None:
            loaded.append({})
        elif not isinstance(value, Mapping):
            v.add(name, "Not a valid object.")
            loaded.append({})
        else:
            try:
                loaded.append(schema.load(value))
            except ValidationError as exc:
                for field, messages in exc.normalized_messages().items():
                    for message in messages if isinstance(messages, list) else [messages]:
                        v.add(f"{name}.{field}", str(message))
                valid = exc.valid_data if isinstance(exc.valid_data, dict) else {}
                loaded.append(dict(valid))
    patient, address, prep = loaded
    return patient, address, prep
