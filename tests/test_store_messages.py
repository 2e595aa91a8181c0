"""Storing a turn's message (store/turns.py ``upsert_message``): insert, replace, and the same id
in another chat being another message (ids are the chat's own, ADR 9), on every database."""

from __future__ import annotations

from agent_sessions.store import chats, sessions, turns
from agent_sessions.store.models import ChatKey
from tests.conftest import Account, Backend


def _two_chats(backend: Backend, alice: Account) -> tuple[ChatKey, ChatKey]:
    with backend.db.write() as s:
        _, first = sessions.create_session(s, account_id=alice.id, new=sessions.NewSession())
        second = chats.create_chat(
            s, account_id=alice.id, session_id=first.session_id, chat_id=None
        )
        return first.key, second.key


def _upsert(backend: Backend, chat: ChatKey, message: dict[str, object]) -> None:
    with backend.db.write() as s:
        turns.upsert_message(
            s, chat=chat, message_id=str(message["id"]), role="assistant", message=message
        )


def test_inserted_then_replaced_whole(backend: Backend, alice: Account) -> None:
    chat, _ = _two_chats(backend, alice)
    mid = f"m-{chat.chat_id}"
    _upsert(backend, chat, {"id": mid, "parts": [{"type": "text", "text": "a"}]})
    _upsert(backend, chat, {"id": mid, "parts": [{"type": "step-start"}], "metadata": {"n": 2}})
    with backend.db.read() as s:
        assert turns.message_of(s, chat, mid) == {
            "id": mid, "parts": [{"type": "step-start"}], "metadata": {"n": 2}
        }  # fmt: skip


def test_the_same_id_in_another_chat_is_another_message(
    backend: Backend, alice: Account, bob: Account
) -> None:
    chat, other = _two_chats(backend, alice)
    bobs, _ = _two_chats(backend, bob)
    _upsert(backend, chat, {"id": "m1", "parts": ["mine"]})
    _upsert(backend, other, {"id": "m1", "parts": ["theirs"]})
    _upsert(backend, bobs, {"id": "m1", "parts": ["bob's"]})
    _upsert(backend, other, {"id": "m1", "parts": ["theirs, again"]})
    with backend.db.write() as s:
        assert turns.truncate_after(s, other, "m1") == 0
        assert turns.message_of(s, chat, "m1") == {"id": "m1", "parts": ["mine"]}
        assert turns.message_of(s, other, "m1") == {"id": "m1", "parts": ["theirs, again"]}
        assert turns.message_of(s, bobs, "m1") == {"id": "m1", "parts": ["bob's"]}
        assert [m.parts for m in chats.messages(s, chat)] == [{"id": "m1", "parts": ["mine"]}]


def test_nul_is_stored_as_replacement_character(backend: Backend, alice: Account) -> None:
    """jsonb refuses U+0000; text that merely spells it (a backslash, then u0000) is kept."""
    chat, _ = _two_chats(backend, alice)
    mid = f"m-{chat.chat_id}"
    texts = ["a\x00b", "\\u0000", "\\\x00", "\x00\x00"]
    _upsert(backend, chat, {"id": mid, "parts": [{"type": "text", "text": t} for t in texts]})
    with backend.db.read() as s:
        stored = turns.message_of(s, chat, mid)
    assert stored is not None
    assert [p["text"] for p in stored["parts"]] == [
        "a\ufffdb",
        "\\u0000",
        "\\\ufffd",
        "\ufffd\ufffd",
    ]
