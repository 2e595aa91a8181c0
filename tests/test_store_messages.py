"""Storing a turn's message (store/turns.py ``upsert_message``): insert, replace, and an id that
another chat holds, on every database."""

from __future__ import annotations

from agent_sessions.store import chats, sessions, turns
from tests.conftest import Account, Backend


def _two_chats(backend: Backend, alice: Account) -> tuple[str, str]:
    with backend.db.write() as s:
        _, first = sessions.create_session(s, account_id=alice.id, new=sessions.NewSession())
        second = chats.create_chat(s, session_id=first.session_id, chat_id=None)
        return first.id, second.id


def _upsert(backend: Backend, chat_id: str, message: dict[str, object]) -> None:
    with backend.db.write() as s:
        turns.upsert_message(
            s, message_id=str(message["id"]), chat_id=chat_id, role="assistant", message=message
        )


def test_inserted_then_replaced_whole(backend: Backend, alice: Account) -> None:
    chat, _ = _two_chats(backend, alice)
    mid = f"m-{chat}"
    _upsert(backend, chat, {"id": mid, "parts": [{"type": "text", "text": "a"}]})
    _upsert(backend, chat, {"id": mid, "parts": [{"type": "step-start"}], "metadata": {"n": 2}})
    with backend.db.read() as s:
        assert turns.message_of(s, mid) == {
            "id": mid, "parts": [{"type": "step-start"}], "metadata": {"n": 2}
        }  # fmt: skip


def test_an_id_another_chat_holds_is_left_alone(backend: Backend, alice: Account) -> None:
    chat, other = _two_chats(backend, alice)
    mid = f"m-{chat}"
    _upsert(backend, chat, {"id": mid, "parts": ["mine"]})
    _upsert(backend, other, {"id": mid, "parts": ["theirs"]})
    with backend.db.read() as s:
        assert turns.message_of(s, mid) == {"id": mid, "parts": ["mine"]}
        assert turns.message_exists_elsewhere(s, mid, other)
