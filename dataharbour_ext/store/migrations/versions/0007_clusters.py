"""Clusters launched or registered through the API (the default one stays in the config).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(256), nullable=False),
        sa.Column("host", sa.String(256)),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("master_url", sa.String(4096), nullable=False),
        sa.Column("ui_url", sa.String(1024)),
        sa.Column("spec", sa.JSON),
        sa.Column("conf", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("failure", sa.Text),
        sa.Column("max_concurrent_jobs", sa.Integer),
        sa.Column("daemons", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_clusters_tenant", "clusters", ["tenant"])


def downgrade() -> None:
    op.drop_table("clusters")
