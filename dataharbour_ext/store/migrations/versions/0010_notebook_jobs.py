"""Notebook jobs: the notebook's path at submit, its parameters and kernel (NULL: a program job).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("notebook", sa.JSON))


def downgrade() -> None:
    op.drop_column("jobs", "notebook")  # see 0009: no batch copy of `jobs`
