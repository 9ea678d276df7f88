"""Initial schema: circles, people, rota, call log, visits, timeline, access log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Tables, in the order they are created:

- circles: the tenants (a GP circle), with their time zone and country.
- callers: phone numbers (E.164) that have called a circle.
- users: dispatchers, doctors, coordinators and admins of a circle; a doctor's
  vehicle; passwords as argon2 hashes.
- zones: a circle's sectors.
- access_log: who read patient data, when, and which record.
- api_tokens: bearer tokens, kept as SHA-256 digests only; revocable, expiring.
- calls: every call to the central number, with patient, address and the
  guides' checklist before a visit (who calls, dogs, light, someone at the door).
- escalation_policies: per alert kind, the ordered steps of an escalation.
- police_contacts: the police zone's contact under the circle's protocol.
- shifts: a doctor on duty in a zone between two UTC instants.
- timeline_events: the append-only history of calls, visits and alerts.
- telephony_events: raw telephone-system events, unique per (circle, call, event)
  so that a replay changes nothing.
- visits: home visits, their state and deadlines' raw times.

Every instant is a timestamp with time zone, stored in UTC.
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "circles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("telephony_key_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_circles")),
        sa.UniqueConstraint("name", name=op.f("uq_circles_name")),
    )
    op.create_table(
        "callers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=160), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_callers_circle_id_circles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callers")),
        sa.UniqueConstraint("circle_id", "number", name=op.f("uq_callers_circle_id_number")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("vehicle_make", sa.String(length=60), nullable=True),
        sa.Column("vehicle_colour", sa.String(length=40), nullable=True),
        sa.Column("vehicle_plate", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_users_circle_id_circles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_index(op.f("ix_users_circle_id"), "users", ["circle_id"])

    op.create_table(
        "zones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_zones_circle_id_circles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zones")),
        sa.UniqueConstraint("circle_id", "name", name=op.f("uq_zones_circle_id_name")),
    )
    op.create_index(op.f("ix_zones_circle_id"), "zones", ["circle_id"])

    op.create_table(
        "access_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_access_log_circle_id_circles")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_access_log_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_log")),
    )
    op.create_index(op.f("ix_access_log_at"), "access_log", ["at"])
    op.create_index(op.f("ix_access_log_circle_id"), "access_log", ["circle_id"])
    op.create_index(op.f("ix_access_log_user_id"), "access_log", ["user_id"])

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_api_tokens_circle_id_circles")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_circle_id"), "api_tokens", ["circle_id"])
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])

    op.create_table(
        "calls",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("call_ref", sa.String(length=120), nullable=True),
        sa.Column("caller_id", sa.Integer(), nullable=True),
        sa.Column("caller_number", sa.String(length=20), nullable=True),
        sa.Column("caller_name", sa.String(length=160), nullable=True),
        sa.Column("line", sa.String(length=40), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("recording_ref", sa.String(length=200), nullable=True),
        sa.Column("ringing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatcher_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("identity_verified", sa.Boolean(), nullable=False),
        sa.Column("identity_verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_name", sa.String(length=160), nullable=True),
        sa.Column("patient_age", sa.Integer(), nullable=True),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        sa.Column("patient_phone", sa.String(length=32), nullable=True),
        sa.Column("patient_usual_gp", sa.String(length=160), nullable=True),
        sa.Column("address_street", sa.String(length=160), nullable=True),
        sa.Column("address_number", sa.String(length=16), nullable=True),
        sa.Column("address_box", sa.String(length=16), nullable=True),
        sa.Column("address_postcode", sa.String(length=12), nullable=True),
        sa.Column("address_city", sa.String(length=80), nullable=True),
        sa.Column("address_floor", sa.String(length=16), nullable=True),
        sa.Column("address_access_notes", sa.Text(), nullable=True),
        sa.Column("address_dwelling", sa.String(length=16), nullable=True),
        sa.Column("caller_relation", sa.String(length=16), nullable=True),
        sa.Column("caller_at_patient_home", sa.Boolean(), nullable=True),
        sa.Column("new_patient", sa.Boolean(), nullable=True),
        sa.Column("dogs_secured", sa.Boolean(), nullable=True),
        sa.Column("outside_light_on", sa.Boolean(), nullable=True),
        sa.Column("met_at_entrance", sa.Boolean(), nullable=True),
        sa.Column("third_person_present", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["caller_id"], ["callers.id"], name=op.f("fk_calls_caller_id_callers")
        ),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_calls_circle_id_circles")
        ),
        sa.ForeignKeyConstraint(
            ["dispatcher_id"], ["users.id"], name=op.f("fk_calls_dispatcher_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("circle_id", "call_ref", name=op.f("uq_calls_circle_id_call_ref")),
    )
    op.create_index(op.f("ix_calls_caller_id"), "calls", ["caller_id"])
    op.create_index("ix_calls_circle_created", "calls", ["circle_id", "created_at"])

    op.create_table(
        "escalation_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("alert_kind", sa.String(length=32), nullable=False),
        sa.Column(
            "steps",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_escalation_policies_circle_id_circles")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"], ["users.id"], name=op.f("fk_escalation_policies_updated_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_policies")),
        sa.UniqueConstraint(
            "circle_id", "alert_kind", name=op.f("uq_escalation_policies_circle_id_alert_kind")
        ),
    )
    op.create_index(op.f("ix_escalation_policies_circle_id"), "escalation_policies", ["circle_id"])

    op.create_table(
        "police_contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("webhook_url", sa.String(length=500), nullable=True),
        sa.Column("protocol_reference", sa.String(length=120), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_police_contacts_circle_id_circles")
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zones.id"], name=op.f("fk_police_contacts_zone_id_zones")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_police_contacts")),
    )
    op.create_index(op.f("ix_police_contacts_circle_id"), "police_contacts", ["circle_id"])
    op.create_index(op.f("ix_police_contacts_zone_id"), "police_contacts", ["zone_id"])

    op.create_table(
        "shifts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=False),
        sa.Column("doctor_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_shifts_ends_after_start")),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_shifts_circle_id_circles")
        ),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["users.id"], name=op.f("fk_shifts_doctor_id_users")
        ),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"], name=op.f("fk_shifts_zone_id_zones")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shifts")),
    )
    op.create_index(op.f("ix_shifts_circle_id"), "shifts", ["circle_id"])
    op.create_index(op.f("ix_shifts_doctor_id"), "shifts", ["doctor_id"])
    op.create_index("ix_shifts_zone_period", "shifts", ["zone_id", "starts_at", "ends_at"])

    op.create_table(
        "timeline_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_timeline_events_actor_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_timeline_events_circle_id_circles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timeline_events")),
    )
    op.create_index(op.f("ix_timeline_events_circle_id"), "timeline_events", ["circle_id"])
    op.create_index("ix_timeline_subject", "timeline_events", ["subject_type", "subject_id", "at"])

    op.create_table(
        "telephony_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("call_ref", sa.String(length=120), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("caller_number", sa.String(length=20), nullable=True),
        sa.Column("line", sa.String(length=40), nullable=True),
        sa.Column("recording_ref", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_telephony_events_call_id_calls")
        ),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_telephony_events_circle_id_circles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telephony_events")),
        sa.UniqueConstraint(
            "circle_id",
            "call_ref",
            "event",
            name=op.f("uq_telephony_events_circle_id_call_ref_event"),
        ),
    )
    op.create_index(op.f("ix_telephony_events_call_id"), "telephony_events", ["call_id"])

    op.create_table(
        "visits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("circle_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=False),
        sa.Column("doctor_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("unassigned_reason", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("identity_verified", sa.Boolean(), nullable=False),
        sa.Column("arrive_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("outcome_note", sa.Text(), nullable=True),
        sa.Column("last_lat", sa.Float(), nullable=True),
        sa.Column("last_lon", sa.Float(), nullable=True),
        sa.Column("last_accuracy_m", sa.Float(), nullable=True),
        sa.Column("last_location_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("patient_name", sa.String(length=160), nullable=True),
        sa.Column("patient_age", sa.Integer(), nullable=True),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        sa.Column("patient_phone", sa.String(length=32), nullable=True),
        sa.Column("patient_usual_gp", sa.String(length=160), nullable=True),
        sa.Column("address_street", sa.String(length=160), nullable=True),
        sa.Column("address_number", sa.String(length=16), nullable=True),
        sa.Column("address_box", sa.String(length=16), nullable=True),
        sa.Column("address_postcode", sa.String(length=12), nullable=True),
        sa.Column("address_city", sa.String(length=80), nullable=True),
        sa.Column("address_floor", sa.String(length=16), nullable=True),
        sa.Column("address_access_notes", sa.Text(), nullable=True),
        sa.Column("address_dwelling", sa.String(length=16), nullable=True),
        sa.Column("caller_relation", sa.String(length=16), nullable=True),
        sa.Column("caller_at_patient_home", sa.Boolean(), nullable=True),
        sa.Column("new_patient", sa.Boolean(), nullable=True),
        sa.Column("dogs_secured", sa.Boolean(), nullable=True),
        sa.Column("outside_light_on", sa.Boolean(), nullable=True),
        sa.Column("met_at_entrance", sa.Boolean(), nullable=True),
        sa.Column("third_person_present", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_visits_call_id_calls")),
        sa.ForeignKeyConstraint(
            ["circle_id"], ["circles.id"], name=op.f("fk_visits_circle_id_circles")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_visits_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["users.id"], name=op.f("fk_visits_doctor_id_users")
        ),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"], name=op.f("fk_visits_zone_id_zones")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
    )
    op.create_index(op.f("ix_visits_call_id"), "visits", ["call_id"])
    op.create_index("ix_visits_circle_created", "visits", ["circle_id", "created_at"])
    op.create_index("ix_visits_doctor_status", "visits", ["doctor_id", "status"])
    op.create_index("ix_visits_zone_status", "visits", ["zone_id", "status"])


def downgrade():
    op.drop_table("visits")
    op.drop_table("telephony_events")
    op.drop_table("timeline_events")
    op.drop_table("shifts")
    op.drop_table("police_contacts")
    op.drop_table("escalation_policies")
    op.drop_table("calls")
    op.drop_table("api_tokens")
    op.drop_table("access_log")
    op.drop_table("zones")
    op.drop_table("users")
    op.drop_table("callers")
    op.drop_table("circles")
