"""Safety core: deadlines, alerts, escalation claims, outbox, channels, live stream.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

New tables:

- stream_events: the consoles' live stream; its id is the Last-Event-ID.
- notification_channels: where a user or a police contact is told (email, SMS,
  webhook); a webhook's signing secret is derived, never stored.
- deadlines: a visit's arrival and departure deadlines, one row per visit and
  kind, with due_at, the reminder time and a state (armed, met, missed,
  cancelled). Partial indexes answer the sweep's "what is due" questions.
- alerts: missed deadlines, panics and duress codes, with the escalation policy
  frozen when they opened, how far each step went, and next_step_at.
- escalation_claims: one row per fired step, unique per (alert, level) and per
  (alert, step, repeat), so that racing workers fire a step once.
- outbox: messages decided in the same transaction as the step, delivered by
  the relay with retries; the row id is the idempotency key.
- delivery_attempts: every try at delivering an outbox row and its outcome.

New columns: the circle's deadline defaults (arrival 45 min, visit 45 min,
reminder 5 min before the end) and its police protocol reference; a doctor's
check-in and duress codes (argon2 hashes).

deadlines.alert_id and alerts.deadline_id refer to each other; the first is
added after both tables exist.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('stream_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('circle_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=48), nullable=False),
    sa.Column('subject_type', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['circle_id'], ['circles.id'], name=op.f('fk_stream_events_circle_id_circles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stream_events'))
    )
    with op.batch_alter_table('stream_events', schema=None) as batch_op:
        batch_op.create_index('ix_stream_events_circle', ['circle_id', 'id'], unique=False)

    op.create_table('notification_channels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('circle_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('police_contact_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=500), nullable=False),
    sa.Column('label', sa.String(length=80), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('key_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['circle_id'], ['circles.id'], name=op.f('fk_notification_channels_circle_id_circles')),
    sa.ForeignKeyConstraint(['police_contact_id'], ['police_contacts.id'], name=op.f('fk_notification_channels_police_contact_id_police_contacts')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_channels_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_channels'))
    )
    with op.batch_alter_table('notification_channels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_channels_circle_id'), ['circle_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notification_channels_police_contact_id'), ['police_contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notification_channels_user_id'), ['user_id'], unique=False)

    op.create_table('deadlines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('circle_id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('doctor_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('remind_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('armed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('extended_minutes', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['circle_id'], ['circles.id'], name=op.f('fk_deadlines_circle_id_circles')),
    sa.ForeignKeyConstraint(['doctor_id'], ['users.id'], name=op.f('fk_deadlines_doctor_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_deadlines_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deadlines')),
    sa.UniqueConstraint('visit_id', 'kind', name=op.f('uq_deadlines_visit_id_kind'))
    )
    with op.batch_alter_table('deadlines', schema=None) as batch_op:
        batch_op.create_index('ix_deadlines_armed_due', ['due_at'], unique=False, postgresql_where=sa.text("state = 'armed'"), sqlite_where=sa.text("state = 'armed'"))
        batch_op.create_index('ix_deadlines_armed_remind', ['remind_at'], unique=False, postgresql_where=sa.text("state = 'armed' AND remind_at IS NOT NULL"), sqlite_where=sa.text("state = 'armed' AND remind_at IS NOT NULL"))
        batch_op.create_index(batch_op.f('ix_deadlines_circle_id'), ['circle_id'], unique=False)

    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('circle_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('visit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('doctor_id', sa.Integer(), nullable=True),
    sa.Column('zone_id', sa.Integer(), nullable=True),
    sa.Column('deadline_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('policy', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('progress', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('next_step_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by_id', sa.Integer(), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_by_id', sa.Integer(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by_id', sa.Integer(), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('accuracy_m', sa.Float(), nullable=True),
    sa.Column('located_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['acknowledged_by_id'], ['users.id'], name=op.f('fk_alerts_acknowledged_by_id_users')),
    sa.ForeignKeyConstraint(['circle_id'], ['circles.id'], name=op.f('fk_alerts_circle_id_circles')),
    sa.ForeignKeyConstraint(['deadline_id'], ['deadlines.id'], name=op.f('fk_alerts_deadline_id_deadlines')),
    sa.ForeignKeyConstraint(['doctor_id'], ['users.id'], name=op.f('fk_alerts_doctor_id_users')),
    sa.ForeignKeyConstraint(['escalated_by_id'], ['users.id'], name=op.f('fk_alerts_escalated_by_id_users')),
    sa.ForeignKeyConstraint(['resolved_by_id'], ['users.id'], name=op.f('fk_alerts_resolved_by_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_alerts_visit_id_visits')),
    sa.ForeignKeyConstraint(['zone_id'], ['zones.id'], name=op.f('fk_alerts_zone_id_zones')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_circle_id'), ['circle_id'], unique=False)
        batch_op.create_index('ix_alerts_circle_status', ['circle_id', 'status', 'opened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_doctor_id'), ['doctor_id'], unique=False)
        batch_op.create_index('ix_alerts_next_step', ['next_step_at'], unique=False, postgresql_where=sa.text("status <> 'resolved' AND next_step_at IS NOT NULL"), sqlite_where=sa.text("status <> 'resolved' AND next_step_at IS NOT NULL"))
        batch_op.create_index(batch_op.f('ix_alerts_visit_id'), ['visit_id'], unique=False)

    with op.batch_alter_table('deadlines', schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f('fk_deadlines_alert_id_alerts'), 'alerts', ['alert_id'], ['id']
        )

    op.create_table('escalation_claims',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('circle_id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('repeat_no', sa.Integer(), nullable=False),
    sa.Column('target', sa.String(length=16), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('fired_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_escalation_claims_alert_id_alerts')),
    sa.ForeignKeyConstraint(['circle_id'], ['circles.id'], name=op.f('fk_escalation_claims_circle_id_circles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_escalation_claims')),
    sa.UniqueConstraint('alert_id', 'level', name=op.f('uq_escalation_claims_alert_id_level')),
    sa.UniqueConstraint('alert_id', 'step_index', 'repeat_no', name=op.f('uq_escalation_claims_alert_id_step_index_repeat_no'))
    )
    with op.batch_alter_table('escalation_claims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_escalation_claims_circle_id'), ['circle_id'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('circle_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('alert_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('deadline_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('claim_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('stop_on', sa.String(length=16), nullable=True),
    sa.Column('recipient_type', sa.String(length=16), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=500), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('receipt', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_outbox_alert_id_alerts')),
    sa.ForeignKeyConstraint(['channel_id'], ['notification_channels.id'], name=op.f('fk_outbox_channel_id_notification_channels')),
    sa.ForeignKeyConstraint(['circle_id'], ['circles.id'], name=op.f('fk_outbox_circle_id_circles')),
    sa.ForeignKeyConstraint(['claim_id'], ['escalation_claims.id'], name=op.f('fk_outbox_claim_id_escalation_claims')),
    sa.ForeignKeyConstraint(['deadline_id'], ['deadlines.id'], name=op.f('fk_outbox_deadline_id_deadlines')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_alert_id'), ['alert_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_circle_id'), ['circle_id'], unique=False)
        batch_op.create_index('ix_outbox_pending', ['next_attempt_at'], unique=False, postgresql_where=sa.text("state = 'pending'"), sqlite_where=sa.text("state = 'pending'"))

    op.create_table('delivery_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('circle_id', sa.Integer(), nullable=False),
    sa.Column('outbox_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('detail', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['circle_id'], ['circles.id'], name=op.f('fk_delivery_attempts_circle_id_circles')),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_delivery_attempts_outbox_id_outbox')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_attempts')),
    sa.UniqueConstraint('outbox_id', 'attempt', name=op.f('uq_delivery_attempts_outbox_id_attempt'))
    )
    with op.batch_alter_table('circles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('arrival_minutes', sa.Integer(), nullable=False, server_default='45'))
        batch_op.add_column(sa.Column('visit_minutes', sa.Integer(), nullable=False, server_default='45'))
        batch_op.add_column(sa.Column('reminder_minutes', sa.Integer(), nullable=False, server_default='5'))
        batch_op.add_column(sa.Column('police_protocol_reference', sa.String(length=120), nullable=True))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checkin_code_hash', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('duress_code_hash', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('codes_set_at', sa.DateTime(timezone=True), nullable=True))



def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('codes_set_at')
        batch_op.drop_column('duress_code_hash')
        batch_op.drop_column('checkin_code_hash')

    with op.batch_alter_table('circles', schema=None) as batch_op:
        batch_op.drop_column('police_protocol_reference')
        batch_op.drop_column('reminder_minutes')
        batch_op.drop_column('visit_minutes')
        batch_op.drop_column('arrival_minutes')

    op.drop_table('delivery_attempts')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending', postgresql_where=sa.text("state = 'pending'"), sqlite_where=sa.text("state = 'pending'"))
        batch_op.drop_index(batch_op.f('ix_outbox_circle_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_alert_id'))

    op.drop_table('outbox')
    with op.batch_alter_table('escalation_claims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_escalation_claims_circle_id'))

    op.drop_table('escalation_claims')
    with op.batch_alter_table('deadlines', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_deadlines_alert_id_alerts'), type_='foreignkey')

    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_visit_id'))
        batch_op.drop_index('ix_alerts_next_step', postgresql_where=sa.text("status <> 'resolved' AND next_step_at IS NOT NULL"), sqlite_where=sa.text("status <> 'resolved' AND next_step_at IS NOT NULL"))
        batch_op.drop_index(batch_op.f('ix_alerts_doctor_id'))
        batch_op.drop_index('ix_alerts_circle_status')
        batch_op.drop_index(batch_op.f('ix_alerts_circle_id'))

    op.drop_table('alerts')
    with op.batch_alter_table('deadlines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deadlines_circle_id'))
        batch_op.drop_index('ix_deadlines_armed_remind', postgresql_where=sa.text("state = 'armed' AND remind_at IS NOT NULL"), sqlite_where=sa.text("state = 'armed' AND remind_at IS NOT NULL"))
        batch_op.drop_index('ix_deadlines_armed_due', postgresql_where=sa.text("state = 'armed'"), sqlite_where=sa.text("state = 'armed'"))

    op.drop_table('deadlines')
    with op.batch_alter_table('notification_channels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_channels_user_id'))
        batch_op.drop_index(batch_op.f('ix_notification_channels_police_contact_id'))
        batch_op.drop_index(batch_op.f('ix_notification_channels_circle_id'))

    op.drop_table('notification_channels')
    with op.batch_alter_table('stream_events', schema=None) as batch_op:
        batch_op.drop_index('ix_stream_events_circle')

    op.drop_table('stream_events')
