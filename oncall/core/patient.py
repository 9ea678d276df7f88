"""Patient and address columns shared by calls and visits.

A call records what the caller said; a visit starts with a copy and is then
corrected on its own, so each keeps its own columns.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

PATIENT_FIELDS = ("name", "age", "birth_date", "phone", "usual_gp")
ADDRESS_FIELDS = (
    "street",
    "number",
    "box",
    "postcode",
    "city",
    "floor",
    "access_notes",
    "dwelling",
)
#: The guides' checklist before a home visit (who calls, dogs, light, someone at the door).
PREPARATION_FIELDS = (
    "caller_relation",
    "caller_at_patient_home",
    "new_patient",
    "dogs_secured",
    "outside_light_on",
    "met_at_entrance",
    "third_person_present",
)
DWELLINGS = ("house", "flat", "other")
CALLER_RELATIONS = ("patient", "family", "neighbour", "carer", "professional", "other")


class PatientColumns:
    """Patient identity and address, as columns with ``patient_`` / ``address_`` prefixes."""

    patient_name: Mapped[str | None] = mapped_column(String(160))
    patient_age: Mapped[int | None] = mapped_column(Integer)
    patient_birth_date: Mapped[date | None] = mapped_column(Date)
    patient_phone: Mapped[str | None] = mapped_column(String(32))
    patient_usual_gp: Mapped[str | None] = mapped_column(String(160))

    address_street: Mapped[str | None] = mapped_column(String(160))
    address_number: Mapped[str | None] = mapped_column(String(16))
    address_box: Mapped[str | None] = mapped_column(String(16))
    address_postcode: Mapped[str | None] = mapped_column(String(12))
    address_city: Mapped[str | None] = mapped_column(String(80))
    address_floor: Mapped[str | None] = mapped_column(String(16))
    address_access_notes: Mapped[str | None] = mapped_column(Text)
    address_dwelling: Mapped[str | None] = mapped_column(String(16))

    caller_relation: Mapped[str | None] = mapped_column(String(16))
    caller_at_patient_home: Mapped[bool | None] = mapped_column()
    new_patient: Mapped[bool | None] = mapped_column()
    dogs_secured: Mapped[bool | None] = mapped_column()
    outside_light_on: Mapped[bool | None] = mapped_column()
    met_at_entrance: Mapped[bool | None] = mapped_column()
    third_person_present: Mapped[bool | None] = mapped_column()

    def patient_dict(self) -> dict[str, object]:
        return {f: getattr(self, f"patient_{f}") for f in PATIENT_FIELDS}

    def address_dict(self) -> dict[str, object]:
        return {f: getattr(self, f"address_{f}") for f in ADDRESS_FIELDS}

    def preparation_dict(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in PREPARATION_FIELDS}

    def apply_patient(self, patient: dict | None, address: dict | None, prep: dict | None) -> None:
        """Copy nested input dictionaries onto the columns (only keys present)."""
        for f, v in (patient or {}).items():
            if f in PATIENT_FIELDS:
                setattr(self, f"patient_{f}", v)
        for f, v in (address or {}).items():
            if f in ADDRESS_FIELDS:
                setattr(self, f"address_{f}", v)
        for f, v in (prep or {}).items():
            if f in PREPARATION_FIELDS:
                setattr(self, f, v)

    def copy_patient_from(self, other: PatientColumns) -> None:
        for f in PATIENT_FIELDS:
            setattr(self, f"patient_{f}", getattr(other, f"patient_{f}"))
        for f in ADDRESS_FIELDS:
            setattr(self, f"address_{f}", getattr(other, f"address_{f}"))
        for f in PREPARATION_FIELDS:
            setattr(self, f, getattr(other, f))
