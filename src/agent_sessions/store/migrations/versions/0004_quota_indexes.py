"""indexes for the per-account quotas: live sandboxes and live turns of an account

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_sessions_account_lifecycle", "sessions", ["account_id", "lifecycle_state"])
    op.create_index("ix_chat_runs_account_status", "chat_runs", ["account_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_chat_runs_account_status", table_name="chat_runs")
    op.drop_index("ix_sessions_account_lifecycle", table_name="sessions")
