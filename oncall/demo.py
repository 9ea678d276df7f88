"""First start and demonstration data.

:func:`bootstrap_circle` creates a circle, its default escalation policies and its
first admin (``oncall bootstrap``). :func:`load_demo` builds a complete, obviously
fictitious circle to try the service with (``oncall demo``, ``oncall serve --demo``):
three zones, a dispatcher, four doctors, a coordinator, an admin, a police contact, a
rota for the next seven days, calls and home visits.

Both write rows through the ORM in one transaction each.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, has_app_context
from sqlalchemy import Select, Table, delete, func, select
from sqlalchemy.exc import IntegrityError

from oncall.accounts.models import User
from oncall.accounts.passwords import hash_password
from oncall.calls.models import Call, Caller
from oncall.circles.models import DEFAULT_POLICIES, Circle, EscalationPolicy, PoliceContact, Zone
from oncall.core.clock import as_utc, localize, to_local
from oncall.core.timeline import record
from oncall.errors import Conflict, Validator
from oncall.extensions import db
from oncall.rota.models import Shift
from oncall.visits.models import Visit

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 12

DEMO_CIRCLE = "Cercle de démonstration"
#: One password shared by every demo login (printed by ``oncall demo``).
DEMO_PASSWORD = "oncall-demo-1234"  # noqa: S105 - printed to every demo user on purpose
DEMO_TIMEZONE = "Europe/Brussels"
#: Local hours at which shifts change: the day runs 08:00-19:00, the night 19:00-08:00.
DAY_START = time(8, 0)
NIGHT_START = time(19, 0)
#: Days of rota built from today (local) on, and before today: the demo's past calls
#: (up to 36 hours ago) have a doctor on duty too.
ROTA_DAYS = 8
ROTA_PAST_DAYS = 2


# --------------------------------------------------------------------------- bootstrap


def _default(name: str, fallback: str) -> str:
    if has_app_context():
        return str(getattr(current_app.config["ONCALL"], name))
    return fallback


def _validate_circle(
    v: Validator, name: str, admin_email: str, admin_password: str, tz: str, country: str
) -> None:
    v.check(0 < len(name) <= 120, "name", "Give a name of 1 to 120 characters.")
    local, _, domain = admin_email.partition("@")
    v.check(
        bool(local) and "." in domain and len(admin_email) <= 254 and " " not in admin_email,
        "admin_email",
        "Give a valid email address.",
    )
    v.check(
        len(admin_password) >= MIN_PASSWORD_LENGTH,
        "admin_password",
        f"Use at least {MIN_PASSWORD_LENGTH} characters.",
    )
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        v.add("timezone", "Unknown time zone (use a name such as Europe/Brussels).")
    v.check(
        len(country) == 2 and country.isalpha() and country.isascii(),
        "country",
        "Give a two-letter country code (BE, FR...).",
    )


def _check_free(name: str, emails: Sequence[str]) -> None:
    taken_circle = db.session.scalar(
        select(Circle.id).where(func.lower(Circle.name) == name.lower())
    )
    if taken_circle is not None:
        raise Conflict(f"A circle named {name!r} already exists.", code="circle_exists")
    taken = list(db.session.scalars(select(User.email).where(User.email.in_(list(emails)))))
    if taken:
        raise Conflict(
            f"A user with the email {', '.join(sorted(taken))} already exists.",
            code="email_taken",
        )


def _new_circle(
    name: str,
    admin_email: str,
    password_hash: str,
    now: datetime,
    tz: str,
    country: str,
    admin_name: str,
) -> tuple[Circle, User]:
    """Add a circle, its default policies and its admin to the session (no commit)."""
    circle = Circle(
        name=name, timezone=tz, country=country, telephony_key_version=1, created_at=now
    )
    db.session.add(circle)
    db.session.flush()
    admin = User(
        circle_id=circle.id,
        email=admin_email,
        name=admin_name,
        role="admin",
        language="fr",
        password_hash=password_hash,
        active=True,
        created_at=now,
    )
    db.session.add(admin)
    db.session.flush()
    for kind, steps in DEFAULT_POLICIES.items():
        db.session.add(
            EscalationPolicy(
                circle_id=circle.id,
                alert_kind=kind,
                steps=copy.deepcopy(steps),
                updated_at=now,
                updated_by_id=None,
            )
        )
    record(circle.id, "circle", circle.id, "circle.created", now, admin.id)
    return circle, admin


def bootstrap_circle(
    name: str,
    admin_email: str,
    admin_password: str,
    now: datetime,
    timezone: str | None = None,
    country: str | None = None,
    admin_name: str | None = None,
) -> tuple[Circle, User]:
    """Create a circle with its default escalation policies and its first admin.

    All or nothing: raises ``ValidationFailed`` naming each bad field, or
    ``Conflict`` when the circle name or the email is taken; nothing is written then.
    """
    now = as_utc(now)
    name = name.strip()
    admin_email = admin_email.strip().lower()
    tz = (timezone or _default("default_timezone", DEMO_TIMEZONE)).strip()
    country = (country or _default("default_country", "BE")).strip().upper()
    v = Validator()
    _validate_circle(v, name, admin_email, admin_password, tz, country)
    v.raise_if_any()
    _check_free(name, [admin_email])
    circle, admin = _new_circle(
        name,
        admin_email,
        hash_password(admin_password),
        now,
        tz,
        country,
        (admin_name or "Administrator").strip() or "Administrator",
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(
            "The circle name or the email was taken meanwhile.", code="circle_exists"
        ) from None
    logger.info("circle %s created with its first admin (user %s)", circle.id, admin.id)
    return circle, admin


# --------------------------------------------------------------------------- rota


@dataclass(frozen=True)
class ShiftSpec:
    """One shift of the demo rota, in UTC."""

    zone_index: int
    doctor_index: int
    starts_at: datetime
    ends_at: datetime
    note: str


def demo_rota(now: datetime, tz: str, zones: int = 3, doctors: int = 4) -> list[ShiftSpec]:
    """Day and night shifts covering every zone from ``now - 40 h`` to past ``now + 7 days``.

    Shifts change at 08:00 and 19:00 local time, converted to UTC with the zone's
    rules, so a night across a daylight-saving change lasts 12 or 14 hours. Each
    slot puts a different doctor in each zone.
    """
    zone = ZoneInfo(tz)
    today = to_local(now, zone).date()
    specs: list[ShiftSpec] = []
    slot = 0
    for offset in range(-ROTA_PAST_DAYS, ROTA_DAYS):
        day = today + timedelta(days=offset)
        weekend = day.weekday() >= 5
        day_note = "Garde de week-end (jour)" if weekend else "Permanence de jour"
        night_note = (
            "Garde de week-end (nuit)" if weekend or day.weekday() == 4 else "Garde de nuit"
        )
        next_day = day + timedelta(days=1)
        periods = (
            (datetime.combine(day, DAY_START), datetime.combine(day, NIGHT_START), day_note),
            (datetime.combine(day, NIGHT_START), datetime.combine(next_day, DAY_START), night_note),
        )
        for start_local, end_local, note in periods:
            starts = as_utc(localize(start_local, zone))
            ends = as_utc(localize(end_local, zone))
            for z in range(zones):
                specs.append(ShiftSpec(z, (slot + z) % doctors, starts, ends, note))
            slot += 1
    return specs


def _on_duty(specs: Sequence[ShiftSpec], zone_index: int, at: datetime) -> int | None:
    for spec in specs:
        if spec.zone_index == zone_index and spec.starts_at <= at < spec.ends_at:
            return spec.doctor_index
    return None


# --------------------------------------------------------------------------- demo data

_ZONES = (
    ("Zone Nord (démo)", "NORD"),
    ("Zone Centre (démo)", "CENTRE"),
    ("Zone Sud (démo)", "SUD"),
)

_STAFF: tuple[dict[str, Any], ...] = (
    {
        "role": "admin",
        "email": "admin@demo.example.org",
        "name": "Administrateur Démo",
        "phone": "+32470000030",
    },
    {
        "role": "dispatcher",
        "email": "dispatch@demo.example.org",
        "name": "Dispatcher Démo",
        "phone": "+32470000010",
    },
    {
        "role": "coordinator",
        "email": "coordination@demo.example.org",
        "name": "Coordinatrice Démo",
        "phone": "+32470000020",
    },
)

_DOCTORS: tuple[dict[str, Any], ...] = (
    {
        "email": "docteur.alpha@demo.example.org",
        "name": "Dr Alpha Démo",
        "phone": "+32470000001",
        "vehicle_make": "Citadine (démo)",
        "vehicle_colour": "blanche",
        "vehicle_plate": "1-DEM-001",
    },
    {
        "email": "docteur.bravo@demo.example.org",
        "name": "Dr Bravo Démo",
        "phone": "+32470000002",
        "vehicle_make": "Break (démo)",
        "vehicle_colour": "grise",
        "vehicle_plate": "1-DEM-002",
    },
    {
        "email": "docteur.charlie@demo.example.org",
        "name": "Dr Charlie Démo",
        "phone": "+32470000003",
        "vehicle_make": "Compacte (démo)",
        "vehicle_colour": "bleue",
        "vehicle_plate": "1-DEM-003",
    },
    {
        "email": "docteur.delta@demo.example.org",
        "name": "Dr Delta Démo",
        "phone": "+32470000004",
        "vehicle_make": "Monospace (démo)",
        "vehicle_colour": "rouge",
        "vehicle_plate": "1-DEM-004",
    },
)

_POLICE = {
    "name": "Police locale, contact fictif (démo)",
    "phone": "+3225000000",
    "email": "police.contact@demo.example.org",
    "protocol_reference": "PROTOCOLE-DEMO-001",
    "notes": "Contact fictif pour la démonstration : l'agent attend en bas de l'immeuble.",
}

_CITIES = (("1999", "Démoville-Nord"), ("2999", "Démoville-Centre"), ("3999", "Démoville-Sud"))


@dataclass(frozen=True)
class _DemoCall:
    hours_ago: float
    zone: int
    number: str
    caller: str
    patient: str
    age: int
    street: str
    street_no: str
    reason: str
    outcome: str
    verified: bool
    #: None: no visit; otherwise the state the visit is left in.
    visit: str | None = None


# fmt: off
_CALLS: tuple[_DemoCall, ...] = (
    _DemoCall(34.0, 0, "+3228000001", "Jean Exemple", "Jean Exemple", 67,
              "Rue de l'Exemple", "1", "Fièvre depuis deux jours",
              "home_visit", True, "completed"),
    _DemoCall(31.5, 1, "+32470000101", "Marie Fictif", "Lucas Fictif", 4,
              "Avenue Imaginaire", "12", "Toux chez l'enfant",
              "consultation_booked", False),
    _DemoCall(28.0, 2, "+3242000001", "Paul Specimen", "Paul Specimen", 81,
              "Chemin du Modèle", "7", "Chute à domicile, ne peut se relever",
              "home_visit", True, "completed"),
    _DemoCall(24.0, 0, "+32470000102", "Sophie Essai", "Sophie Essai", 35,
              "Place de la Maquette", "3", "Douleur thoracique",
              "redirected_112", False),
    _DemoCall(20.0, 1, "+3281000001", "Luc Prototype", "Anne Prototype", 58,
              "Rue du Brouillon", "21", "Question sur un traitement",
              "advice_line", False),
    _DemoCall(16.5, 2, "+3228000002", "Claire Témoin", "Claire Témoin", 72,
              "Boulevard Factice", "44", "Vertiges",
              "transferred_to_doctor", True),
    _DemoCall(12.0, 1, "+3228000001", "Jean Exemple", "Jean Exemple", 67,
              "Rue de l'Exemple", "1", "Fièvre persistante, rappel",
              "home_visit", True, "cancelled"),
    _DemoCall(8.0, 0, "+32470000201", "Nadia Simulée", "Nadia Simulée", 29,
              "Impasse Fictive", "5", "Renouvellement d'ordonnance",
              "no_action", False),
    _DemoCall(5.0, 2, "+3226000001", "Marc Illustré", "Léa Illustrée", 9,
              "Rue Imaginaire", "18", "Otite, douleur forte",
              "consultation_booked", True),
    _DemoCall(3.0, 1, "+3242000000", "Hélène Exemplaire", "Hélène Exemplaire", 54,
              "Quai du Modèle", "2", "Malaise passager",
              "transferred_to_doctor", False),
    _DemoCall(0.75, 0, "+3281000001", "Luc Prototype", "Anne Prototype", 58,
              "Rue du Brouillon", "21", "Douleurs abdominales",
              "home_visit", True, "assigned"),
    _DemoCall(0.25, 2, "+3242000001", "Paul Specimen", "Paul Specimen", 81,
              "Chemin du Modèle", "7", "Difficultés respiratoires",
              "home_visit", True, "assigned"),
)
# fmt: on


@dataclass
class DemoSummary:
    """What :func:`load_demo` created: the circle, the logins and some counts."""

    circle_id: int
    logins: list[tuple[str, str]]
    password: str
    counts: dict[str, int] = field(default_factory=dict)


def demo_logins() -> list[tuple[str, str]]:
    """(role, email) of every demo login, admin first."""
    return [(s["role"], s["email"]) for s in _STAFF] + [("doctor", d["email"]) for d in _DOCTORS]


def find_demo_circle() -> Circle | None:
    """The demo circle, if it exists."""
    return db.session.scalars(select(Circle).where(Circle.name == DEMO_CIRCLE)).first()


def load_demo(
    now: datetime, *, force: bool = False, password: str = DEMO_PASSWORD
) -> DemoSummary | None:
    """Create the demo circle; None (and nothing written) if it exists and not ``force``.

    With ``force`` an existing demo circle and everything in it is deleted first.
    The whole demo is written in one transaction.
    """
    now = as_utc(now)
    existing = find_demo_circle()
    if existing is not None:
        if not force:
            return None
        delete_circle(existing.id)
        db.session.flush()
    emails = [email for _, email in demo_logins()]
    _check_free(DEMO_CIRCLE, emails)

    password_hash = hash_password(password)
    admin_spec, *others = _STAFF
    circle, admin = _new_circle(
        DEMO_CIRCLE,
        admin_spec["email"],
        password_hash,
        now,
        DEMO_TIMEZONE,
        "BE",
        admin_spec["name"],
    )
    admin.phone = admin_spec["phone"]

    zones = [Zone(circle_id=circle.id, name=n, code=c, active=True) for n, c in _ZONES]
    db.session.add_all(zones)
    staff = {
        s["role"]: User(
            circle_id=circle.id,
            language="fr",
            password_hash=password_hash,
            active=True,
            created_at=now,
            **s,
        )
        for s in others
    }
    doctors = [
        User(
            circle_id=circle.id,
            role="doctor",
            language="fr",
            password_hash=password_hash,
            active=True,
            created_at=now,
            **d,
        )
        for d in _DOCTORS
    ]
    db.session.add_all([*staff.values(), *doctors])
    db.session.add(PoliceContact(circle_id=circle.id, zone_id=None, active=True, **_POLICE))
    db.session.flush()

    rota = demo_rota(now, DEMO_TIMEZONE, zones=len(zones), doctors=len(doctors))
    db.session.add_all(
        Shift(
            circle_id=circle.id,
            zone_id=zones[s.zone_index].id,
            doctor_id=doctors[s.doctor_index].id,
            starts_at=s.starts_at,
            ends_at=s.ends_at,
            note=s.note,
        )
        for s in rota
    )
    calls, visits = _add_calls_and_visits(circle, zones, doctors, staff["dispatcher"], rota, now)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("The demo circle was created meanwhile.", code="circle_exists") from None
    logger.info("demo circle %s created", circle.id)
    return DemoSummary(
        circle_id=circle.id,
        logins=demo_logins(),
        password=password,
        counts={
            "zones": len(zones),
            "doctors": len(doctors),
            "shifts": len(rota),
            "calls": calls,
            "visits": visits,
        },
    )


def _add_calls_and_visits(
    circle: Circle,
    zones: Sequence[Zone],
    doctors: Sequence[User],
    dispatcher: User,
    rota: Sequence[ShiftSpec],
    now: datetime,
) -> tuple[int, int]:
    callers: dict[str, Caller] = {}
    visits = 0
    for i, spec in enumerate(_CALLS, start=1):
        number, caller_name, patient, z = spec.number, spec.caller, spec.patient, spec.zone
        outcome, verified, reason = spec.outcome, spec.verified, spec.reason
        at = now - timedelta(hours=spec.hours_ago)
        caller = callers.get(number)
        if caller is None:
            caller = Caller(
                circle_id=circle.id,
                number=number,
                name=caller_name,
                first_seen_at=at,
                last_seen_at=at,
            )
            db.session.add(caller)
            db.session.flush()
            callers[number] = caller
        caller.last_seen_at = at
        postcode, city = _CITIES[z]
        call = Call(
            circle_id=circle.id,
            call_ref=f"demo-{i:04d}",
            caller_id=caller.id,
            caller_number=number,
            caller_name=caller_name,
            line="central",
            state="ended",
            ringing_at=at,
            answered_at=at + timedelta(seconds=9),
            ended_at=at + timedelta(minutes=4),
            dispatcher_id=dispatcher.id,
            reason=reason,
            identity_verified=verified,
            identity_verified_at=at + timedelta(minutes=3) if verified else None,
            outcome=outcome,
            note="Données fictives de démonstration.",
            created_at=at,
            updated_at=at + timedelta(minutes=4),
            patient_name=patient,
            patient_age=spec.age,
            patient_phone=number,
            patient_usual_gp="Dr Généraliste Fictif",
            address_street=spec.street,
            address_number=spec.street_no,
            address_postcode=postcode,
            address_city=city,
            address_dwelling="house" if i % 2 else "flat",
            address_floor=None if i % 2 else "2",
            address_access_notes="Sonnette au nom d'Exemple (fictif).",
            caller_relation="patient" if caller_name == patient else "family",
            caller_at_patient_home=True,
            new_patient=i % 3 == 0,
            dogs_secured=True,
            outside_light_on=True,
            met_at_entrance=i % 2 == 0,
            third_person_present=i % 2 == 1,
        )
        db.session.add(call)
        db.session.flush()
        record(circle.id, "call", call.id, "call.created", at, dispatcher.id, source="manual")
        record(
            circle.id,
            "call",
            call.id,
            "call.outcome_set",
            at + timedelta(minutes=4),
            dispatcher.id,
            old=None,
            new=outcome,
        )
        if verified:
            record(
                circle.id,
                "call",
                call.id,
                "call.identity_verified",
                at + timedelta(minutes=3),
                dispatcher.id,
            )
        if spec.visit is not None:
            _add_visit(circle, call, zones[z], z, doctors, dispatcher, rota, at, now, spec.visit)
            visits += 1
    return len(_CALLS), visits


def _add_visit(
    circle: Circle,
    call: Call,
    zone: Zone,
    zone_index: int,
    doctors: Sequence[User],
    dispatcher: User,
    rota: Sequence[ShiftSpec],
    called_at: datetime,
    now: datetime,
    plan: str,
) -> None:
    created = called_at + timedelta(minutes=5)
    on_duty = _on_duty(rota, zone_index, created)
    doctor = doctors[on_duty] if on_duty is not None else None
    visit = Visit(
        circle_id=circle.id,
        call_id=call.id,
        zone_id=zone.id,
        doctor_id=doctor.id if doctor else None,
        status="assigned" if doctor else "unassigned",
        unassigned_reason=None if doctor else "Aucun médecin de garde dans la zone.",
        reason=call.reason,
        identity_verified=call.identity_verified,
        arrive_by=max(created + timedelta(minutes=45), now + timedelta(minutes=20)),
        created_by_id=dispatcher.id,
        created_at=created,
        updated_at=created,
        assigned_at=created if doctor else None,
    )
    visit.copy_patient_from(call)
    if plan == "completed" and doctor:
        visit.arrive_by = created + timedelta(minutes=45)
        visit.status = "completed"
        visit.checked_in_at = created + timedelta(minutes=30)
        visit.checked_out_at = created + timedelta(minutes=55)
        visit.outcome_note = "Visite terminée sans incident (démo)."
        visit.updated_at = visit.checked_out_at
    elif plan == "cancelled":
        visit.arrive_by = created + timedelta(minutes=45)
        visit.status = "cancelled"
        visit.cancelled_at = created + timedelta(minutes=20)
        visit.cancel_reason = "Le patient s'est rendu au poste de garde (démo)."
        visit.updated_at = visit.cancelled_at
    db.session.add(visit)
    db.session.flush()
    _visit_timeline(visit, dispatcher, doctor, created)


def _visit_timeline(visit: Visit, dispatcher: User, doctor: User | None, created: datetime) -> None:
    """The events the visit services would have written for the same story."""

    def event(kind: str, at: datetime, actor: User, **data: Any) -> None:
        record(visit.circle_id, "visit", visit.id, kind, at, actor.id, **data)

    event(
        "visit.created",
        created,
        dispatcher,
        call_id=visit.call_id,
        zone_id=visit.zone_id,
        arrive_by=visit.arrive_by,
    )
    if doctor is None:
        return
    event(
        "visit.assigned",
        created,
        dispatcher,
        from_status="unassigned",
        to_status="assigned",
        doctor_id=doctor.id,
        on_duty=True,
    )
    if visit.status == "completed" and visit.checked_in_at and visit.checked_out_at:
        event(
            "visit.checked_in",
            visit.checked_in_at,
            doctor,
            from_status="assigned",
            to_status="on_site",
            location=None,
        )
        event(
            "visit.checked_out",
            visit.checked_out_at,
            doctor,
            from_status="on_site",
            to_status="completed",
            location=None,
            with_note=True,
        )
    elif visit.status == "cancelled" and visit.cancelled_at:
        event(
            "visit.cancelled",
            visit.cancelled_at,
            dispatcher,
            from_status="assigned",
            to_status="cancelled",
            reason=visit.cancel_reason,
            doctor_id=doctor.id,
        )


# --------------------------------------------------------------------------- cleanup


def delete_circle(circle_id: int) -> None:
    """Delete a circle and every row that belongs to it (no commit).

    Works from the table metadata, so tables added later are covered: a table is
    cleared by its ``circle_id`` column, or through a foreign key to a table that
    is. Used only for the demo circle (``oncall demo --force``).
    """
    tables = db.metadata.sorted_tables
    owned: dict[str, Select[Any]] = {}
    for table in tables:
        selector = _owned_rows(table, circle_id, owned)
        if selector is not None:
            owned[table.name] = selector
    for table in reversed(tables):
        if table.name == "circles":
            continue
        selector = owned.get(table.name)
        if selector is None:
            continue
        pk = list(table.primary_key.columns)
        if len(pk) == 1:
            db.session.execute(delete(table).where(pk[0].in_(selector)))
    db.session.execute(delete(Circle.__table__).where(Circle.__table__.c.id == circle_id))


def _owned_rows(table: Table, circle_id: int, owned: dict[str, Select[Any]]) -> Select[Any] | None:
    pk = list(table.primary_key.columns)
    if len(pk) != 1:
        return None
    if table.name == "circles":
        return select(pk[0]).where(pk[0] == circle_id)
    if "circle_id" in table.c:
        return select(pk[0]).where(table.c.circle_id == circle_id)
    for fk in table.foreign_keys:
        parent = fk.column.table.name
        if parent in owned and parent != table.name:
            return select(pk[0]).where(fk.parent.in_(owned[parent]))
    return None
