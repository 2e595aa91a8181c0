"""workspace: base branch, auto commit/push and pull-request columns on sessions, forge tokens

``base_branch``: ``isNewBranch`` names the new branch at once (``branch`` answers it);
provisioning, and a pull request's base, still need the branch it starts from.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_false = sa.false()


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode: on SQLite batch mode recreates ``sessions``, and with
    # foreign keys enforced dropping the old table would cascade into every chat (ADR 9).
    for name in ("auto_commit_push", "auto_create_pr"):
        op.add_column(
            "sessions", sa.Column(name, sa.Boolean(), nullable=False, server_default=_false)
        )
    op.add_column("sessions", sa.Column("base_branch", sa.String(length=255), nullable=True))
    op.add_column("sessions", sa.Column("pr_number", sa.Integer(), nullable=True))
    op.add_column("sessions", sa.Column("pr_status", sa.String(length=16), nullable=True))
    op.create_table(
        "forge_credentials",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("token_encrypted", sa.Text(), nullable=False),
        sa.Column("login", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_forge_credentials_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_forge_credentials")),
    )


def downgrade() -> None:
    op.drop_table("forge_credentials")
    for name in ("pr_status", "pr_number", "base_branch", "auto_create_pr", "auto_commit_push"):
        op.drop_column("sessions", name)  # SQLite ≥ 3.35 drops a column in place
