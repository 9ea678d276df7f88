"""What a notification says, in the recipient's language (French, Dutch, English).

Subjects and first lines are short enough for an SMS; the rest of an email is
the briefing's lines. A webhook receives the structured payload instead.
"""

from __future__ import annotations

from typing import Any

_KIND = {
    "fr": {
        "missed_arrival": "Arrivée non confirmée",
        "missed_checkout": "Départ non confirmé",
        "panic": "BOUTON PANIQUE",
        "duress": "CODE DE CONTRAINTE",
    },
    "nl": {
        "missed_arrival": "Aankomst niet bevestigd",
        "missed_checkout": "Vertrek niet bevestigd",
        "panic": "PANIEKKNOP",
        "duress": "DWANGCODE",
    },
    "en": {
        "missed_arrival": "Arrival not confirmed",
        "missed_checkout": "Departure not confirmed",
        "panic": "PANIC BUTTON",
        "duress": "DURESS CODE",
    },
}

_TEXT = {
    "fr": {
        "alert": "Alerte {id}: {kind} — Dr {doctor}. {where}",
        "doctor_missed": "Vous n'avez pas confirmé votre {what} (visite {visit}). "
        "Confirmez dans l'application ou prolongez.",
        "arrival": "arrivée",
        "departure": "départ",
        "reminder": "Votre visite {visit} se termine à {due}. Faites votre check-out "
        "ou prolongez (+15 min).",
        "resolved": "Alerte {id} levée: {note}",
        "ack": "Pris en charge par {who}.",
        "repeat": "Rappel {n}",
    },
    "nl": {
        "alert": "Alarm {id}: {kind} — Dr {doctor}. {where}",
        "doctor_missed": "U hebt uw {what} niet bevestigd (bezoek {visit}). "
        "Bevestig in de app of verleng.",
        "arrival": "aankomst",
        "departure": "vertrek",
        "reminder": "Uw bezoek {visit} eindigt om {due}. Check uit of verleng (+15 min).",
        "resolved": "Alarm {id} opgeheven: {note}",
        "ack": "Opgenomen door {who}.",
        "repeat": "Herinnering {n}",
    },
    "en": {
        "alert": "Alert {id}: {kind} — Dr {doctor}. {where}",
        "doctor_missed": "You have not confirmed your {what} (visit {visit}). "
        "Confirm in the app or extend.",
        "arrival": "arrival",
        "departure": "departure",
        "reminder": "Your visit {visit} ends at {due}. Check out or extend (+15 min).",
        "resolved": "Alert {id} resolved: {note}",
        "ack": "Taken in charge by {who}.",
        "repeat": "Repeat {n}",
    },
}


def language(code: str | None) -> str:
    """A language we write in (French by default)."""
    return code if code in _TEXT else "fr"


def kind_label(kind: str, lang: str) -> str:
    return _KIND[language(lang)].get(kind, kind)


def text(key: str, lang: str, **values: Any) -> str:
    return _TEXT[language(lang)][key].format(**values)


def where(briefing: dict[str, Any]) -> str:
    """The visit's address in one line ('' when the alert has no visit)."""
    address = ((briefing.get("visit") or {}).get("address")) or {}
    parts = [
        " ".join(str(address[k]) for k in ("street", "number") if address.get(k)),
        " ".join(str(address[k]) for k in ("postcode", "city") if address.get(k)),
    ]
    line = ", ".join(p for p in parts if p)
    if address.get("floor"):
        line += f" ({address['floor']})"
    return line
