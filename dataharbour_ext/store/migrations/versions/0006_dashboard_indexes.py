"""The dashboard's numbers from indexes: a job's latest-run duration stored on the job (the
mean and p95 read an index of it instead of joining every job to its run), and runs indexed
by tenant, state and end time (the per-day trends count index ranges).

Jobs that succeeded or failed before this revision get their duration from their latest run
here. Killed and lost runs get none: a kill cuts a run short, and a lost run's end is when a
server noticed it was gone, so a server's downtime would count as running time.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIMED = "('succeeded', 'failed')"
# Seconds between two timestamps of the latest run (naive UTC on both databases). SQLite keeps
# them as 'YYYY-MM-DD HH:MM:SS.ffffff' text; its date functions round to milliseconds, so the
# whole seconds come from strftime and the microseconds from the text.
SECONDS = {
    "sqlite": "(strftime('%s', runs.finished_at) - strftime('%s', runs.started_at)) "
    "+ (CAST(substr(runs.finished_at, 20) AS REAL) - CAST(substr(runs.started_at, 20) AS REAL))",
    "postgresql": "EXTRACT(EPOCH FROM (runs.finished_at - runs.started_at))",
}


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("duration", sa.Float))
    seconds = SECONDS.get(op.get_bind().dialect.name, SECONDS["postgresql"])
    op.execute(
        f"UPDATE jobs SET duration = (SELECT {seconds} FROM runs WHERE runs.job_id = jobs.id "
        f"AND runs.attempt = jobs.attempt AND runs.state IN {TIMED} "
        f"AND runs.started_at IS NOT NULL AND runs.finished_at IS NOT NULL) "
        f"WHERE jobs.state IN {TIMED}"
    )
    op.create_index("ix_jobs_tenant_duration", "jobs", ["tenant", "duration"])
    op.create_index("ix_runs_tenant_state_finished", "runs", ["tenant", "state", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_tenant_state_finished", "runs")
    op.drop_index("ix_jobs_tenant_duration", "jobs")
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of `jobs` would have to drop the
    # table that `runs` refers to, which SQLite's foreign key checks refuse.
    op.drop_column("jobs", "duration")
