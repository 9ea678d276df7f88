"""Imports every table so that the metadata (and Alembic) sees all of them."""

from oncall.accounts.models import ApiToken, User
from oncall.alerts.models import Alert, Deadline, EscalationClaim
from oncall.calls.models import Call, Caller, TelephonyEvent
from oncall.circles.models import Circle, EscalationPolicy, PoliceContact, Zone
from oncall.core.timeline import AccessLogEntry, TimelineEvent
from oncall.notify.models import DeliveryAttempt, NotificationChannel, OutboxMessage, StreamEvent
from oncall.rota.models import Shift
from oncall.visits.models import Visit

__all__ = [
    "AccessLogEntry",
    "Alert",
    "ApiToken",
    "Call",
    "Caller",
    "Circle",
    "Deadline",
    "DeliveryAttempt",
    "EscalationClaim",
    "EscalationPolicy",
    "NotificationChannel",
    "OutboxMessage",
    "PoliceContact",
    "Shift",
    "StreamEvent",
    "TelephonyEvent",
    "TimelineEvent",
    "User",
    "Visit",
    "Zone",
]
