"""Demonstration data: a complete, obviously fictitious circle, built through the use cases.

:func:`load_demo` (``oncall demo``, ``oncall serve --demo``) replays a short story
with the same service functions the API calls, each at its own instant: a day and
a half ago the circle is created and its admin adds three zones, a dispatcher, a
coordinator, four doctors and a police contact, and plans the rota up to seven
days ahead; then the dispatcher logs calls, turns some into home visits that the
real assignment gives to the doctor on duty, and the doctors check in and out.
So the demo is validated, assigned and written down exactly as users' requests
are. Each step is its own transaction; if one fails, the half-built circle is
deleted again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import delete, select
from sqlalchemy.sql.elements import ColumnElement

from oncall.accounts.models import User
from oncall.accounts.services import create_user, set_codes, update_me
from oncall.calls.services import create_call, update_call
from oncall.circles.models import Circle
from oncall.circles.services import (
    create_circle,
    create_police_contact,
    create_zone,
    update_circle,
)
from oncall.core.clock import as_utc, to_local
from oncall.extensions import db
from oncall.rota.services import local_shift_times, plan_shifts
from oncall.visits.services import cancel_visit, check_in, check_out, create_visit

logger = logging.getLogger(__name__)

DEMO_CIRCLE = "Cercle de démonstration"
#: One password shared by every demo login (printed by ``oncall demo``).
DEMO_PASSWORD = "oncall-demo-1234"  # noqa: S105 - printed to every demo user on purpose
#: Every demo doctor's check-in code and duress code (printed with the logins).
DEMO_CHECKIN_CODE = "2468"
DEMO_DURESS_CODE = "1357"
DEMO_TIMEZONE = "Europe/Brussels"
#: Local hours at which shifts change: the day runs 08:00-19:00, the night 19:00-08:00.
DAY_START = time(8, 0)
NIGHT_START = time(19, 0)
#: How long before ``now`` the story starts (the circle is created, the rota planned).
HISTORY = timedelta(hours=36)
#: The rota runs to the end of the local day this far after ``now`` (and its night).
ROTA_AHEAD = timedelta(days=7)
_PERIODS = ((DAY_START, NIGHT_START), (NIGHT_START, DAY_START))

_ADMIN = {"email": "admin@demo.example.org", "name": "Administrateur Démo"}
_ADMIN_PHONE = "0470 00 00 30"
_USERS: tuple[dict[str, str], ...] = (
    {"role": "dispatcher", "email": "dispatch@demo.example.org", "name": "Dispatcher Démo",
     "phone": "0470 00 00 10"},
    {"role": "coordinator", "email": "coordination@demo.example.org",
     "name": "Coordinatrice Démo", "phone": "0470 00 00 20"},
    *(
        {"role": "doctor", "email": f"docteur.{key}@demo.example.org",
         "name": f"Dr {key.title()} Démo", "phone": f"0470 00 00 0{i}",
         "vehicle_make": f"{make} (démo)", "vehicle_colour": colour,
         "vehicle_plate": f"1-DEM-00{i}"}
        for i, (key, make, colour) in enumerate(
            (("alpha", "Citadine", "blanche"), ("bravo", "Break", "grise"),
             ("charlie", "Compacte", "bleue"), ("delta", "Monospace", "rouge")),
            start=1,
        )
    ),
)
_ZONES = ({"name": "Zone Nord (démo)", "code": "NORD"},
          {"name": "Zone Centre (démo)", "code": "CENTRE"},
          {"name": "Zone Sud (démo)", "code": "SUD"})
_POLICE = {
    "name": "Police locale, contact fictif (démo)",
    "phone": "02 500 00 00",
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
    reason: str
    outcome: str
    verified: bool
    #: For a home visit, the state it is left in: assigned, on_site, completed or cancelled.
    visit: str | None = None


# fmt: off
_CALLS: tuple[_DemoCall, ...] = (  # oldest first: the story is replayed in this order
    _DemoCall(34.0, 0, "02 800 00 01", "Jean Exemple", "Jean Exemple", 67, "Rue de l'Exemple 1",
              "Fièvre depuis deux jours", "home_visit", True, "completed"),
    _DemoCall(31.5, 1, "0470 00 01 01", "Marie Fictif", "Lucas Fictif", 4, "Avenue Imaginaire 12",
              "Toux chez l'enfant", "consultation_booked", False),
    _DemoCall(28.0, 2, "04 200 00 01", "Paul Spécimen", "Paul Spécimen", 81, "Chemin du Modèle 7",
              "Chute à domicile, ne peut se relever", "home_visit", True, "completed"),
    _DemoCall(24.0, 0, "0470 00 01 02", "Sophie Essai", "Sophie Essai", 35,
              "Place de la Maquette 3", "Douleur thoracique", "redirected_112", False),
    _DemoCall(20.0, 1, "081 00 00 01", "Luc Prototype", "Anne Prototype", 58,
              "Rue du Brouillon 21", "Question sur un traitement", "advice_line", False),
    _DemoCall(16.5, 2, "02 800 00 02", "Claire Témoin", "Claire Témoin", 72,
              "Boulevard Factice 44", "Vertiges", "transferred_to_doctor", True),
    _DemoCall(12.0, 1, "02 800 00 01", "Jean Exemple", "Jean Exemple", 67, "Rue de l'Exemple 1",
              "Fièvre persistante, rappel", "home_visit", True, "cancelled"),
    _DemoCall(8.0, 0, "0470 00 02 01", "Nadia Simulée", "Nadia Simulée", 29, "Impasse Fictive 5",
              "Renouvellement d'ordonnance", "no_action", False),
    _DemoCall(5.0, 2, "02 600 00 01", "Marc Illustré", "Léa Illustrée", 9, "Rue Imaginaire 18",
              "Otite, douleur forte", "consultation_booked", True),
    _DemoCall(3.0, 1, "04 200 00 00", "Hélène Exemplaire", "Hélène Exemplaire", 54,
              "Quai du Modèle 2", "Malaise passager", "transferred_to_doctor", False),
    _DemoCall(0.75, 0, "081 00 00 01", "Luc Prototype", "Anne Prototype", 58,
              "Rue du Brouillon 21", "Douleurs abdominales", "home_visit", True, "on_site"),
    _DemoCall(0.25, 2, "04 200 00 01", "Paul Spécimen", "Paul Spécimen", 81, "Chemin du Modèle 7",
              "Difficultés respiratoires", "home_visit", True, "assigned"),
)
# fmt: on


@dataclass(frozen=True)
class RotaPlan:
    """One call of ``plan_shifts``: a zone, a doctor, the same local hours on several days."""

    zone_index: int
    doctor_index: int
    start: time
    end: time
    days: tuple[date, ...]


def demo_rota(
    since: datetime, until: datetime, tz: str, zones: int = 3, doctors: int = 4
) -> list[RotaPlan]:
    """Day and night shifts covering every zone from ``since`` to the end of ``until``'s day.

    Shifts change at 08:00 and 19:00 local time (the rota service turns them into
    UTC, so a night across a daylight-saving change lasts 12 or 14 hours). In each
    slot every zone has one doctor, a different one in each zone.
    """
    plans: dict[tuple[int, int, time, time], list[date]] = defaultdict(list)
    day, last = to_local(since, tz).date() - timedelta(days=1), to_local(until, tz).date()
    while day <= last:
        for period, (start, end) in enumerate(_PERIODS):
            if local_shift_times(tz, day, start, end)[1] > since:
                slot = 2 * day.toordinal() + period
                for zone in range(zones):
                    plans[(zone, (slot + zone) % doctors, start, end)].append(day)
        day += timedelta(days=1)
    return [RotaPlan(z, d, s, e, tuple(days)) for (z, d, s, e), days in plans.items()]


@dataclass
class DemoSummary:
    """What :func:`load_demo` created: the circle, the logins and some counts."""

    circle_id: int
    logins: list[tuple[str, str]]
    password: str
    counts: dict[str, int] = field(default_factory=dict)


def demo_logins() -> list[tuple[str, str]]:
    """(role, email) of every demo login, admin first."""
    return [("admin", _ADMIN["email"])] + [(u["role"], u["email"]) for u in _USERS]


def find_demo_circle() -> Circle | None:
    """The demo circle, if it exists."""
    return db.session.scalars(select(Circle).where(Circle.name == DEMO_CIRCLE)).first()


def load_demo(
    now: datetime, *, force: bool = False, password: str = DEMO_PASSWORD
) -> DemoSummary | None:
    """Create the demo circle; None (and nothing written) if it exists and not ``force``.

    With ``force`` an existing demo circle and everything in it is deleted first.
    A service's refusal (a ``DomainError``) propagates after the half-built circle
    has been deleted again, so a failed run leaves nothing behind.
    """
    now = as_utc(now)
    existing = find_demo_circle()
    if existing is not None:
        if not force:
            return None
        delete_circle(existing.id)
        db.session.commit()
    since = now - HISTORY
    circle, admin = create_circle(DEMO_CIRCLE, _ADMIN["email"], password, since,
                                  timezone=DEMO_TIMEZONE, country="BE", admin_name=_ADMIN["name"])
    circle_id = circle.id
    try:
        counts = _populate(admin, now, since, password)
    except BaseException:
        db.session.rollback()
        delete_circle(circle_id)
        db.session.commit()
        raise
    logger.info("demo circle %s created", circle_id)
    return DemoSummary(circle_id=circle_id, logins=demo_logins(), password=password, counts=counts)


def _populate(admin: User, now: datetime, since: datetime, password: str) -> dict[str, int]:
    """The admin's setup at ``since``, then the calls and visits of the last hours."""
    update_me(admin, {"phone": _ADMIN_PHONE}, since)
    zones = [create_zone(admin, data, since) for data in _ZONES]
    create_police_contact(admin, _POLICE, since)
    update_circle(admin, {"police_protocol_reference": _POLICE["protocol_reference"]}, since)
    users = [create_user(admin, {**data, "password": password}, since) for data in _USERS]
    for doctor in (u for u in users if u.role == "doctor"):
        set_codes(doctor, {"checkin_code": DEMO_CHECKIN_CODE,
                           "duress_code": DEMO_DURESS_CODE}, since)
    staff = {u.role: u for u in users if u.role != "doctor"}
    doctors = [u for u in users if u.role == "doctor"]
    shifts = 0
    for plan in demo_rota(since, now + ROTA_AHEAD, DEMO_TIMEZONE, len(zones), len(doctors)):
        shifts += len(plan_shifts(admin, zones[plan.zone_index].id, doctors[plan.doctor_index].id,
                                  plan.days, plan.start, plan.end, since))
    by_id = {d.id: d for d in doctors}
    visits = sum(_replay_call(spec, i, now, staff["dispatcher"], zones[spec.zone].id, by_id)
                 for i, spec in enumerate(_CALLS))
    return {"zones": len(zones), "users": len(users) + 1, "doctors": len(doctors),
            "shifts": shifts, "calls": len(_CALLS), "visits": visits}


def _replay_call(spec: _DemoCall, i: int, now: datetime, dispatcher: User, zone_id: int,
                 doctors: dict[int, User]) -> int:
    """Log one call as the dispatcher would, then its outcome or home visit; 1 if a visit."""
    at = now - timedelta(hours=spec.hours_ago)
    logged = at + timedelta(minutes=4)
    street, _, number = spec.street.rpartition(" ")
    postcode, city = _CITIES[spec.zone]
    call = create_call(dispatcher, {
        "caller_number": spec.number, "caller_name": spec.caller, "line": "central",
        "answered_at": at, "ended_at": logged, "reason": spec.reason,
        "identity_verified": spec.verified, "note": "Données fictives de démonstration.",
        "patient": {"name": spec.patient, "age": spec.age, "phone": spec.number,
                    "usual_gp": "Dr Généraliste Fictif"},
        "address": {"street": street, "number": number, "postcode": postcode, "city": city,
                    "dwelling": "house" if i % 2 else "flat", "floor": None if i % 2 else "2",
                    "access_notes": "Sonnette au nom d'Exemple (fictif)."},
        "preparation": {"caller_relation": "patient" if spec.caller == spec.patient else "family",
                        "caller_at_patient_home": True, "new_patient": i % 3 == 0,
                        "dogs_secured": True, "outside_light_on": True,
                        "met_at_entrance": i % 2 == 0, "third_person_present": i % 2 == 1},
    }, logged)
    decided = logged + timedelta(minutes=1)
    if spec.visit is None:
        update_call(dispatcher, call["id"], {"outcome": spec.outcome}, decided)
        return 0
    visit = create_visit(
        dispatcher, {"call_id": call["id"], "zone_id": zone_id, "eta_minutes": 45}, decided
    )
    if visit["doctor_id"] is None:
        raise RuntimeError(f"demo visit {visit['id']} found nobody on duty: the rota has a gap")
    doctor = doctors[visit["doctor_id"]]
    if spec.visit == "cancelled":
        cancel_visit(dispatcher, visit["id"], "Le patient s'est rendu au poste de garde (démo).",
                     decided + timedelta(minutes=20))
    elif spec.visit in ("on_site", "completed"):
        check_in(doctor, visit["id"], decided + timedelta(minutes=25))
        if spec.visit == "completed":
            check_out(doctor, visit["id"], decided + timedelta(minutes=50),
                      outcome_note="Visite terminée sans incident (démo).")
    return 1


def delete_circle(circle_id: int) -> None:
    """Delete a circle and every row that belongs to it, in every table (no commit).

    Works from the table metadata, so tables added later are covered: a table is
    cleared by its ``circle_id`` column, or through a foreign key to a table that
    is. Used only for the demo circle (``oncall demo --force``).
    """
    tables = db.metadata.sorted_tables
    owned: dict[str, ColumnElement[bool]] = {}
    for table in tables:
        if table.name == "circles":
            owned[table.name] = table.c.id == circle_id
        elif "circle_id" in table.c:
            owned[table.name] = table.c.circle_id == circle_id
        else:
            for fk in table.foreign_keys:
                parent = fk.column.table
                if parent.name in owned and parent is not table:
                    owned[table.name] = fk.parent.in_(
                        select(fk.column).where(owned[parent.name])
                    )
                    break
    for table in reversed(tables):
        if table.name in owned:
            db.session.execute(delete(table).where(owned[table.name]))

