"""Patient and address columns shared by calls and visits.

A call records what the caller said; a visit starts with a copy and is then
corrected on its own, so each keeps its own columns. The API's schemas of these
fields are in :mod:`oncall.core.patient_schemas`; their limits are defined here,
next to the columns they protect.
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

#: Longest text of each patient and address field: the columns' sizes (the access
#: notes column is unbounded text; 2000 characters is the API's bound).
PATIENT_LIMITS = {"name": 160, "phone": 32, "usual_gp": 160}
ADDRESS_LIMITS = {
    "street": 160,
    "number": 16,
    "box": 16,
    "postcode": 12,
    "city": 80,
    "floor": 16,
    "access_notes": 2000,
}
#: Oldest age (in years) accepted for a patient, and so the oldest birth date.
MAX_AGE = 130


class PatientColumns:
    """Patient identity and address, as columns with ``patient_`` / ``address_`` prefixes."""

    patient_name: Mapped[str | None] = mapped_column(String(PATIENT_LIMITS["name"]))
    patient_age: Mapped[int | None] = mapped_column(Integer)
    patient_birth_date: Mapped[date | None] = mapped_column(Date)
    patient_phone: Mapped[str | None] = mapped_column(String(PATIENT_LIMITS["phone"]))
    patient_usual_gp: Mapped[str | None] = mapped_column(String(PATIENT_LIMITS["usual_gp"]))

    address_street: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["street"]))
    address_number: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["number"]))
    address_box: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["box"]))
    address_postcode: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["postcode"]))
    address_city: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["city"]))
    address_floor: Mapped[str | None] = mapped_column(String(ADDRESS_LIMITS["floor"]))
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
        """The patient as the API shows it (every field of :data:`PATIENT_FIELDS`)."""
        return {f: getattr(self, f"patient_{f}") for f in PATIENT_FIELDS}

    def address_dict(self) -> dict[str, object]:
        """The address as the API shows it (every field of :data:`ADDRESS_FIELDS`)."""
        return {f: getattr(self, f"address_{f}") for f in ADDRESS_FIELDS}

    def preparation_dict(self) -> dict[str, object]:
        """The checklist as the API shows it (every field of :data:`PREPARATION_FIELDS`)."""
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
        """Copy every patient, address and checklist column of ``other``."""
        for f in PATIENT_FIELDS:
            setattr(self, f"patient_{f}", getattr(other, f"patient_{f}"))
        for f in ADDRESS_FIELDS:
            setattr(self, f"address_{f}", getattr(other, f"address_{f}"))
        for f in PREPARATION_FIELDS:
            setattr(self, f, getattr(other, f))
