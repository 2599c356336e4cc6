"""System metric samples: one row per sample of a host, kept for the history charts.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("taken_at_ms", sa.BigInteger, nullable=False),
        sa.Column("cpu_percent", sa.Float, nullable=False),
        sa.Column("cpu_count", sa.Integer, nullable=False),
        sa.Column("load_1", sa.Float, nullable=False),
        sa.Column("load_5", sa.Float, nullable=False),
        sa.Column("load_15", sa.Float, nullable=False),
        sa.Column("memory_total", sa.BigInteger, nullable=False),
        sa.Column("memory_used", sa.BigInteger, nullable=False),
        sa.Column("memory_available", sa.BigInteger, nullable=False),
        sa.Column("memory_percent", sa.Float, nullable=False),
        sa.Column("swap_total", sa.BigInteger, nullable=False),
        sa.Column("swap_used", sa.BigInteger, nullable=False),
        sa.Column("swap_percent", sa.Float, nullable=False),
        sa.Column("disk_total", sa.BigInteger, nullable=False),
        sa.Column("disk_used", sa.BigInteger, nullable=False),
        sa.Column("disk_percent", sa.Float, nullable=False),
        sa.Column("disk_read_bytes_per_sec", sa.Float),
        sa.Column("disk_write_bytes_per_sec", sa.Float),
        sa.Column("network_rx_bytes_per_sec", sa.Float),
        sa.Column("network_tx_bytes_per_sec", sa.Float),
        sa.Column("processes", sa.Integer, nullable=False),
        sa.Column("kernels", sa.Integer, nullable=False),
        sa.Column("sessions", sa.Integer, nullable=False),
        sa.Column("jobs_running", sa.Integer, nullable=False),
        sa.Column("jobs_queued", sa.Integer, nullable=False),
    )
    op.create_index("ix_metric_samples_host_taken", "metric_samples", ["host", "taken_at_ms"])


def downgrade() -> None:
    op.drop_table("metric_samples")
