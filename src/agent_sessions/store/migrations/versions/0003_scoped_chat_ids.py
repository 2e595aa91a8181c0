"""chat ids per account, message ids per chat (ADR 9)

Chats are keyed by (account_id, id), the account being the session's; messages by
(account_id, chat_id, id); read marks and runs refer to a chat by (account_id, chat_id).

The tables that refer to ``chats.id`` let go of it first: on PostgreSQL its primary key cannot
be dropped while foreign keys depend on it, and on SQLite batch mode drops and recreates
``chats``, which with foreign keys enforced (``store/database.py``) would cascade into the rows
that refer to it. Recreated afterwards, each table's rows are copied under the new foreign keys,
so SQLite checks every row against them as PostgreSQL does when it adds them.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REFERRERS = ("chat_messages", "chat_reads", "chat_runs")
_ACCOUNT_ID = sa.String(length=36)


def _refer_to_chats(batch: BatchOperations, table: str) -> None:
    batch.create_foreign_key(
        f"fk_{table}_account_id_chats",
        "chats",
        ["account_id", "chat_id"],
        ["account_id", "id"],
        ondelete="CASCADE",
    )


def upgrade() -> None:
    # What refers to chats.id lets go of it; messages get their chat's account.
    with op.batch_alter_table("chat_messages") as batch:
        batch.drop_constraint("fk_chat_messages_chat_id_chats", type_="foreignkey")
        batch.add_column(sa.Column("account_id", _ACCOUNT_ID, nullable=True))
    with op.batch_alter_table("chat_reads") as batch:
        batch.drop_constraint("fk_chat_reads_chat_id_chats", type_="foreignkey")
        batch.drop_index("ix_chat_reads_chat_id")  # the primary key serves the new reference
    with op.batch_alter_table("chat_runs") as batch:
        batch.drop_constraint("fk_chat_runs_chat_id_chats", type_="foreignkey")
        batch.drop_index("ix_chat_runs_chat_created")
    with op.batch_alter_table("chats") as batch:
        batch.add_column(sa.Column("account_id", _ACCOUNT_ID, nullable=True))

    op.execute(
        "UPDATE chats SET account_id ="
        " (SELECT sessions.account_id FROM sessions WHERE sessions.id = chats.session_id)"
    )
    op.execute(
        "UPDATE chat_messages SET account_id ="
        " (SELECT chats.account_id FROM chats WHERE chats.id = chat_messages.chat_id)"
    )
    # Only a chat's owner ever reached it, so every read mark is the owner's; one that is not
    # could not refer to the chat under the new key.
    op.execute(
        "DELETE FROM chat_reads WHERE account_id <>"
        " (SELECT chats.account_id FROM chats WHERE chats.id = chat_reads.chat_id)"
    )

    with op.batch_alter_table("chats") as batch:
        batch.alter_column("account_id", existing_type=_ACCOUNT_ID, nullable=False)
        batch.drop_constraint("pk_chats", type_="primary")
        batch.create_primary_key("pk_chats", ["account_id", "id"])
        batch.create_foreign_key(
            "fk_chats_account_id_accounts", "accounts", ["account_id"], ["id"], ondelete="CASCADE"
        )
    with op.batch_alter_table("chat_messages") as batch:
        batch.alter_column("account_id", existing_type=_ACCOUNT_ID, nullable=False)
        batch.drop_constraint("pk_chat_messages", type_="primary")
        batch.create_primary_key("pk_chat_messages", ["account_id", "chat_id", "id"])
        batch.drop_index("ix_chat_messages_chat_created")
        batch.create_index(
            "ix_chat_messages_chat_created", ["account_id", "chat_id", "created_at", "id"]
        )
        _refer_to_chats(batch, "chat_messages")
    with op.batch_alter_table("chat_reads") as batch:
        _refer_to_chats(batch, "chat_reads")
    with op.batch_alter_table("chat_runs") as batch:
        _refer_to_chats(batch, "chat_runs")
        batch.create_index("ix_chat_runs_chat_created", ["account_id", "chat_id", "created_at"])


def downgrade() -> None:
    """Back to global ids: fails (a duplicate key) once two accounts share a chat id or two
    chats a message id."""
    for table in _REFERRERS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_account_id_chats", type_="foreignkey")
    with op.batch_alter_table("chat_runs") as batch:
        batch.drop_index("ix_chat_runs_chat_created")
    with op.batch_alter_table("chat_messages") as batch:
        batch.drop_index("ix_chat_messages_chat_created")
        batch.drop_constraint("pk_chat_messages", type_="primary")
        batch.create_primary_key("pk_chat_messages", ["id"])
        batch.drop_column("account_id")
        batch.create_index("ix_chat_messages_chat_created", ["chat_id", "created_at", "id"])
    with op.batch_alter_table("chats") as batch:
        batch.drop_constraint("fk_chats_account_id_accounts", type_="foreignkey")
        batch.drop_constraint("pk_chats", type_="primary")
        batch.create_primary_key("pk_chats", ["id"])
        batch.drop_column("account_id")
    for table in _REFERRERS:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_chat_id_chats", "chats", ["chat_id"], ["id"], ondelete="CASCADE"
            )
    with op.batch_alter_table("chat_reads") as batch:
        batch.create_index("ix_chat_reads_chat_id", ["chat_id"])
    with op.batch_alter_table("chat_runs") as batch:
        batch.create_index("ix_chat_runs_chat_created", ["chat_id", "created_at"])
