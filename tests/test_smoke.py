from fastapi.testclient import TestClient

from tests.conftest import Account


def test_create_then_get(client: TestClient, alice: Account) -> None:
    created = client.post("/api/sessions", json={}, headers=alice.headers)
    assert created.status_code == 200, created.text
    sid = created.json()["session"]["id"]
    got = client.get(f"/api/sessions/{sid}", headers=alice.headers)
    assert got.status_code == 200
    assert got.json()["session"]["userId"] == alice.id
