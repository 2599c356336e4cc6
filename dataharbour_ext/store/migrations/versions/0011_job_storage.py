"""Object storage: a job's input objects, a run's archived files and why archiving failed.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("inputs", sa.JSON))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("artifacts", sa.JSON))
        batch.add_column(sa.Column("artifacts_error", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("artifacts_error")
        batch.drop_column("artifacts")
    op.drop_column("jobs", "inputs")  # see 0009: no batch copy of `jobs`
