"""Imports every table so that the metadata (and Alembic) sees all of them."""

from oncall.accounts.models import ApiToken, User
from oncall.calls.models import Call, Caller, TelephonyEvent
from oncall.circles.models import Circle, EscalationPolicy, PoliceContact, Zone
from oncall.core.timeline import AccessLogEntry, TimelineEvent
from oncall.rota.models import Shift
from oncall.visits.models import Visit

__all__ = [
    "AccessLogEntry",
    "ApiToken",
    "Call",
    "Caller",
    "Circle",
    "EscalationPolicy",
    "PoliceContact",
    "Shift",
    "TelephonyEvent",
    "TimelineEvent",
    "User",
    "Visit",
    "Zone",
]
