"""The schema of the first release (jobs and runs), as its create_all made it.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("cluster_id", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("file", sa.String(4096)),
        sa.Column("args", sa.JSON, nullable=False),
        sa.Column("conf", sa.JSON, nullable=False),
        sa.Column("env", sa.JSON, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    for column in ("name", "cluster_id", "state", "created_at", "updated_at"):
        op.create_index(f"ix_jobs_{column}", "jobs", [column])
    op.create_table(
        "runs",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("cluster_id", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_dir", sa.String(4096), nullable=False),
        sa.Column("queued_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("exit_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("spark_app_id", sa.String(256)),
        sa.Column("spark_ui_url", sa.String(1024)),
        sa.Column("pid", sa.Integer),
        sa.Column("pid_started", sa.Float),
        sa.Column("kill_requested", sa.Boolean, nullable=False),
    )
    for column in ("cluster_id", "state", "queued_at"):
        op.create_index(f"ix_runs_{column}", "runs", [column])


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("jobs")
