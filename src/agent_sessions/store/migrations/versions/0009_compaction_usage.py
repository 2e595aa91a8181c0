"""compaction usage: the tokens and cost of the summary a run wrote, on chat_runs

The run's figures already include it (ADR 15); these columns hold its part, as ``subagent_*``
hold the subagents'.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = ("compaction_input_tokens", "compaction_output_tokens")


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode (see 0005: batch mode would recreate the table).
    for name in _COUNTS:
        op.add_column(
            "chat_runs", sa.Column(name, sa.Integer(), nullable=False, server_default="0")
        )
    op.add_column("chat_runs", sa.Column("compaction_cost_nanousd", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for name in ("compaction_cost_nanousd", *reversed(_COUNTS)):
        op.drop_column("chat_runs", name)  # SQLite ≥ 3.35 drops a column in place
