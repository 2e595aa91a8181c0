"""``/api/account/forge-token``: set, replace, delete; stored encrypted; never answered back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agent_sessions.settings import Settings
from agent_sessions.store.models import ForgeCredential
from agent_sessions.workspace.credentials import Vault
from tests.conftest import Backend, api_app, make_account
from tests.workspace.repos import OPERATOR, TOKEN

PATH = "/api/account/forge-token"
NOT_SET = {"configured": False, "source": None, "login": None, "updatedAt": None}


def _row(backend: Backend, account_id: str) -> ForgeCredential | None:
    with backend.db.read() as s:
        return s.get(ForgeCredential, account_id)


def test_set_replace_delete(backend: Backend) -> None:
    alice, bob = make_account(backend.db, "alice"), make_account(backend.db, "bob")
    settings = backend.settings()
    with TestClient(api_app(backend), raise_server_exceptions=False) as client:
        assert client.get(PATH, headers=alice.headers).json() == NOT_SET
        first = client.put(PATH, json={"token": TOKEN}, headers=alice.headers)
        assert first.status_code == 200, first.text
        body = first.json()
        assert (body["configured"], body["source"], body["login"]) == (True, "account", None)
        assert datetime.fromisoformat(body["updatedAt"])
        row = _row(backend, alice.id)
        assert row is not None and TOKEN not in row.token_encrypted
        assert Vault(settings).open(row.token_encrypted) == TOKEN  # sealed, not hashed
        assert client.get(PATH, headers=bob.headers).json() == NOT_SET  # per account

        second = client.put(PATH, json={"token": TOKEN + "2"}, headers=alice.headers)
        assert second.status_code == 200
        assert second.json()["updatedAt"] >= body["updatedAt"]
        row = _row(backend, alice.id)
        assert row is not None and Vault(settings).open(row.token_encrypted) == TOKEN + "2"

        gone = client.delete(PATH, headers=alice.headers)
        assert gone.status_code == 204 and gone.content == b""
        assert client.get(PATH, headers=alice.headers).json() == NOT_SET
        again = client.delete(PATH, headers=alice.headers)
        assert again.status_code == 404
        assert again.json() == {
            "status": "error",
            "error": "No forge token is set for this account",
        }
        for r in (first, second):
            assert TOKEN not in r.text


def test_the_operators_token_is_the_fallback(backend: Backend) -> None:
    alice = make_account(backend.db, "alice")
    with TestClient(api_app(backend, forge_token=OPERATOR)) as client:
        operator = {"configured": True, "source": "operator", "login": None, "updatedAt": None}
        assert client.get(PATH, headers=alice.headers).json() == operator
        assert client.put(PATH, json={"token": TOKEN}, headers=alice.headers).json()["source"] == (
            "account"
        )
        assert client.delete(PATH, headers=alice.headers).status_code == 204
        assert client.get(PATH, headers=alice.headers).json() == operator
        assert OPERATOR not in client.get(PATH, headers=alice.headers).text


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"token": ""},
        {"token": 5},
        {"token": None},
        {"token": f" {TOKEN}"},
        {"token": f"{TOKEN} x"},
        {"token": f"{TOKEN}\n"},
        {"token": f"{TOKEN}\x07"},
        {"token": f"{TOKEN}\x7f"},
        {"token": f"{TOKEN}\x00"},
        {"token": "x" * 1001},
        {"token": TOKEN, "login": "me"},
    ],
)
def test_bad_tokens_are_400_and_store_nothing(backend: Backend, body: dict[str, Any]) -> None:
    alice = make_account(backend.db, "alice")
    with TestClient(api_app(backend), raise_server_exceptions=False) as client:
        r = client.put(PATH, json=body, headers=alice.headers)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error"
    assert TOKEN not in r.text and "x" * 50 not in r.text  # the value is never echoed
    with backend.db.read() as s:
        assert s.scalar(select(func.count()).select_from(ForgeCredential)) == 0


def test_a_lost_key_means_no_token_not_a_wrong_one(backend: Backend) -> None:
    """Tokens sealed under another key cannot be opened: the account has none (the operator's
    applies, if set), rather than a garbled one sent to the forge."""
    alice = make_account(backend.db, "alice")
    with TestClient(api_app(backend, secret_key="one")) as client:
        client.put(PATH, json={"token": TOKEN}, headers=alice.headers)
    with TestClient(api_app(backend, secret_key="two", forge_token=OPERATOR)) as client:
        assert client.get(PATH, headers=alice.headers).json()["source"] == "operator"
    other = Vault(Settings(data_dir=backend.data_dir, secret_key="two", forge_token=OPERATOR))
    with backend.db.read() as s:
        assert other.token_for(s, alice.id) == OPERATOR
