"""poll watermarks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 06:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.store.tables

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('poll_watermarks',
    sa.Column('system', sa.String(length=64), nullable=False),
    sa.Column('watermark', hub.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('polled_at', hub.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('records', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('failed_at', hub.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('system', name=op.f('pk_poll_watermarks'))
    )


def downgrade() -> None:
    op.drop_table('poll_watermarks')
