"""status workflow (claims and evidence marks per ticket), alerts and their sends to channels

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import hub.store.tables

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_index('ix_field_values_status_since', 'field_values', ['source_modified_at'], unique=False,
                    sqlite_where=sa.text("field = 'status'"), postgresql_where=sa.text("field = 'status'"))
    op.create_table('ticket_workflow',
    sa.Column('ticket_id', sa.String(length=32), nullable=False),
    sa.Column('claims', JSON, nullable=False),
    sa.Column('marks', JSON, nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.ticket_id'], name=op.f('fk_ticket_workflow_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('ticket_id', name=op.f('pk_ticket_workflow'))
    )
    op.create_table('alerts',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('alert_key', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('ticket_id', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=True),
    sa.Column('system', sa.String(length=64), nullable=True),
    sa.Column('author', sa.String(length=255), nullable=True),
    sa.Column('since', hub.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('facts', JSON, nullable=False),
    sa.Column('raised_at', hub.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('alert_key', name=op.f('uq_alerts_alert_key'))
    )
    op.create_index(op.f('ix_alerts_ticket_id'), 'alerts', ['ticket_id'], unique=False)
    op.create_table('alert_sends',
    sa.Column('alert_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', hub.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', hub.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', hub.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_sends_alert_id_alerts')),
    sa.PrimaryKeyConstraint('alert_id', 'channel', name=op.f('pk_alert_sends'))
    )
    op.create_index('ix_alert_sends_state', 'alert_sends', ['state', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_alert_sends_state', table_name='alert_sends')
    op.drop_table('alert_sends')
    op.drop_index(op.f('ix_alerts_ticket_id'), table_name='alerts')
    op.drop_table('alerts')
    op.drop_table('ticket_workflow')
    op.drop_index('ix_field_values_status_since', table_name='field_values')
