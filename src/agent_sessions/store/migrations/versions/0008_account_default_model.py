"""accounts: a default model per account

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (not batch mode, which would recreate the table on SQLite: ADR 9).
    op.add_column("accounts", sa.Column("default_model_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("accounts", "default_model_id")
