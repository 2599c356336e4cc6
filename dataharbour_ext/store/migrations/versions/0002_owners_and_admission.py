"""Owners and process identity on runs, the run backend, a job's log level, admission locks.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

def _new_run_columns() -> list[sa.Column]:
    return [
        sa.Column("backend", sa.String(32)),
        sa.Column("pid_start_ticks", sa.BigInteger),
        sa.Column("pid_boot_id", sa.String(64)),
        sa.Column("owner_host", sa.String(256)),
        sa.Column("owner_boot_id", sa.String(64)),
        sa.Column("owner_instance", sa.String(64)),
        sa.Column("owner_pid", sa.Integer),
        sa.Column("owner_start_ticks", sa.BigInteger),
    ]


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in _new_run_columns():
            batch.add_column(column)
    op.execute("UPDATE runs SET backend = 'spark-submit'")
    op.create_index("ix_runs_state_queued", "runs", ["state", "queued_at"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("log_level", sa.String(16)))
    op.create_table("admission", sa.Column("cluster_id", sa.String(256), primary_key=True))


def downgrade() -> None:
    op.drop_table("admission")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("log_level")
    op.drop_index("ix_runs_state_queued", "runs")
    with op.batch_alter_table("runs") as batch:
        for column in _new_run_columns():
            batch.drop_column(column.name)
