"""reconcile

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 21:10:28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import hub.store.tables

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('reconcile_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('since', hub.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('systems', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('tickets', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('started_at', hub.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', hub.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', hub.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ticket_count', sa.Integer(), nullable=False),
    sa.Column('copy_count', sa.Integer(), nullable=False),
    sa.Column('not_checked', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconcile_runs'))
    )
    with op.batch_alter_table('reconcile_runs', schema=None) as batch_op:
        batch_op.create_index('uq_reconcile_runs_running', ['state'], unique=True, sqlite_where=sa.text("state = 'running'"), postgresql_where=sa.text("state = 'running'"))

    op.create_table('reconcile_parts',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('part', sa.String(length=80), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['reconcile_runs.id'], name=op.f('fk_reconcile_parts_run_id_reconcile_runs')),
    sa.PrimaryKeyConstraint('run_id', 'part', name=op.f('pk_reconcile_parts'))
    )
    op.create_table('reconcile_copies',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('system', sa.String(length=64), nullable=False),
    sa.Column('local_id', sa.String(length=255), nullable=False),
    sa.Column('ticket_id', sa.String(length=32), nullable=True),
    sa.Column('modified_at', hub.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('author', sa.String(length=255), nullable=False),
    sa.Column('fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('fingerprint', sa.LargeBinary(length=16), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['reconcile_runs.id'], name=op.f('fk_reconcile_copies_run_id_reconcile_runs')),
    sa.PrimaryKeyConstraint('run_id', 'system', 'local_id', name=op.f('pk_reconcile_copies'))
    )
    with op.batch_alter_table('reconcile_copies', schema=None) as batch_op:
        batch_op.create_index('ix_reconcile_copies_run_ticket', ['run_id', 'ticket_id'], unique=False)

    op.create_table('reconcile_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.String(length=32), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('system', sa.String(length=64), nullable=True),
    sa.Column('local_id', sa.String(length=255), nullable=True),
    sa.Column('field', sa.String(length=64), nullable=True),
    sa.Column('item', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('proposal', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('awaiting_review', sa.Boolean(), nullable=False),
    sa.Column('decision', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['reconcile_runs.id'], name=op.f('fk_reconcile_items_run_id_reconcile_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconcile_items'))
    )
    with op.batch_alter_table('reconcile_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reconcile_items_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reconcile_items_ticket_id'), ['ticket_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('reconcile_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reconcile_items_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_reconcile_items_run_id'))

    op.drop_table('reconcile_items')
    op.drop_table('reconcile_parts')
    with op.batch_alter_table('reconcile_copies', schema=None) as batch_op:
        batch_op.drop_index('ix_reconcile_copies_run_ticket')

    op.drop_table('reconcile_copies')
    with op.batch_alter_table('reconcile_runs', schema=None) as batch_op:
        batch_op.drop_index('uq_reconcile_runs_running', sqlite_where=sa.text("state = 'running'"), postgresql_where=sa.text("state = 'running'"))

    op.drop_table('reconcile_runs')
