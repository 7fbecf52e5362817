"""the snapshot's index by ticket also holds each copy's system and fingerprint, so that the hash-first check
of a chunk reads the index alone, never the copies' rows (their fields)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 00:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_reconcile_copies_run_ticket', table_name='reconcile_copies')
    op.create_index('ix_reconcile_copies_run_ticket_print', 'reconcile_copies',
                    ['run_id', 'ticket_id', 'system', 'fingerprint'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_reconcile_copies_run_ticket_print', table_name='reconcile_copies')
    op.create_index('ix_reconcile_copies_run_ticket', 'reconcile_copies', ['run_id', 'ticket_id'], unique=False)
