"""A tenant on every job and run: servers of different users may share one store; and the
owner's last sign of life on runs (servers on several hosts).

Rows made before (a store of one user) take the tenant of the first server that opens the
store after the upgrade (`JobStore` fills the empty ones).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("jobs", "runs"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("tenant", sa.String(256), nullable=False, server_default=""))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner_seen_at", sa.DateTime))
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant", "created_at", "id"])
    op.create_index("ix_jobs_tenant_updated", "jobs", ["tenant", "updated_at", "id"])
    op.create_index("ix_jobs_tenant_state_created", "jobs", ["tenant", "state", "created_at", "id"])
    op.create_index("ix_runs_tenant_state", "runs", ["tenant", "state"])


def downgrade() -> None:
    op.drop_index("ix_runs_tenant_state", "runs")
    for index in ("ix_jobs_tenant_state_created", "ix_jobs_tenant_updated", "ix_jobs_tenant_created"):
        op.drop_index(index, "jobs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("owner_seen_at")
    for table in ("runs", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tenant")
