"""hosts: the processes sharing the database, with their heartbeats; the process that
accepted each run (issue 17)

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("executor_id", sa.String(64), primary_key=True),
        sa.Column("instance", sa.String(32), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("sandbox_provider", sa.String(16), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_over_by", sa.String(64), nullable=True),
        sa.Column("taken_over_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("chat_runs", sa.Column("executor_id", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("chat_runs", "executor_id")
    op.drop_table("hosts")
