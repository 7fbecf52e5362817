"""delivery claims name their worker; worker heartbeats, so a dead worker's claims are taken back in seconds

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.store.tables

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a plain ADD COLUMN (SQLite has it): no table rebuild, the partial indexes stay as they are
    op.add_column('deliveries', sa.Column('claimed_by', sa.String(length=160), nullable=True))
    op.create_table('worker_heartbeats',
    sa.Column('worker_id', sa.String(length=160), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', hub.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', hub.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('worker_id', name=op.f('pk_worker_heartbeats'))
    )


def downgrade() -> None:
    op.drop_table('worker_heartbeats')
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('claimed_by')
