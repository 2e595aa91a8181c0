"""workspace: the branch a session's new branch is created from

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ``isNewBranch`` names the new branch at once (``branch`` answers it); provisioning, and
    # a pull request's base, still need the branch it starts from.
    op.add_column("sessions", sa.Column("base_branch", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("sessions", "base_branch")  # SQLite ≥ 3.35 drops a column in place
