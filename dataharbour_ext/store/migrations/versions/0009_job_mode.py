"""The run mode a job asked for (batch, connect, auto; NULL: its cluster's default).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("mode", sa.String(16)))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of `jobs` would have to drop the
    # table that `runs` refers to, which SQLite's foreign key checks refuse.
    op.drop_column("jobs", "mode")
