"""run usage: cached tokens, the subagents' share, cost and duration on chat_runs

Every figure stays the run's total; ``subagent_*`` columns hold the subagents' part of it.
``duration_ms`` is filled in for the runs that already finished, so usage sums it in SQL.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = (
    "cache_read_tokens",
    "cache_write_tokens",
    "subagent_input_tokens",
    "subagent_output_tokens",
    "subagent_cache_read_tokens",
    "subagent_cache_write_tokens",
    "subagent_tool_calls",
)
_NULLABLE = ("cost_nanousd", "subagent_cost_nanousd", "duration_ms")

_DURATION = {
    "sqlite": "CAST(ROUND((julianday(finished_at) - julianday(started_at)) * 86400000) AS INTEGER)",
    "postgresql": "CAST(ROUND(EXTRACT(EPOCH FROM finished_at - started_at) * 1000) AS BIGINT)",
}


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode (see 0005: batch mode would recreate the table).
    for name in _COUNTS:
        op.add_column(
            "chat_runs", sa.Column(name, sa.Integer(), nullable=False, server_default="0")
        )
    for name in _NULLABLE:
        op.add_column("chat_runs", sa.Column(name, sa.BigInteger(), nullable=True))
    op.create_index("ix_chat_runs_account_created", "chat_runs", ["account_id", "created_at"])
    duration = _DURATION[op.get_bind().dialect.name]
    op.execute(
        f"UPDATE chat_runs SET duration_ms = {duration} "
        "WHERE started_at IS NOT NULL AND finished_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_chat_runs_account_created", table_name="chat_runs")
    for name in (*_NULLABLE, *reversed(_COUNTS)):
        op.drop_column("chat_runs", name)  # SQLite ≥ 3.35 drops a column in place
