"""Owners of launched clusters: the server that watches a cluster's daemons, as for runs.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("owner_host", sa.String(256)))
        batch.add_column(sa.Column("owner_boot_id", sa.String(64)))
        batch.add_column(sa.Column("owner_instance", sa.String(64)))
        batch.add_column(sa.Column("owner_pid", sa.Integer))
        batch.add_column(sa.Column("owner_start_ticks", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        for name in ("owner_host", "owner_boot_id", "owner_instance", "owner_pid", "owner_start_ticks"):
            batch.drop_column(name)
