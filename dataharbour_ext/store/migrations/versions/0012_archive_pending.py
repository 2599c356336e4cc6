"""Runs whose files are still to be archived (a server that stopped before archiving them
leaves them to the next one on its host), and what became of a run's folder.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("archive_pending", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("folder_state", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("folder_state")
        batch.drop_column("archive_pending")
