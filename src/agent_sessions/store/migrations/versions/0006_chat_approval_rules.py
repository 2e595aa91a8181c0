"""chats.approval_rules: the tool calls a chat adds to those waiting for approval (ADR 14)

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch mode: recreating ``chats`` on SQLite would cascade, ADR 9).
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.add_column("chats", sa.Column("approval_rules", json_type, nullable=True))


def downgrade() -> None:
    op.drop_column("chats", "approval_rules")
