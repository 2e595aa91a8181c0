"""index for GET /api/runs: an account's runs, newest first

Revision ID: 0010
Revises: 0005
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_chat_runs_account_created", "chat_runs", ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_chat_runs_account_created", table_name="chat_runs")
