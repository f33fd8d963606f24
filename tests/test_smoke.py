from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import AccountKey


def test_health_reports_database_ok(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "schema": "ok"}


def test_mailbox_roundtrip(client: TestClient, account: AccountKey) -> None:
    created = client.post("/v1/mailboxes", json={"name": "agent"}, headers=account.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["mcp_url"] == f"https://chatbox.example.test/mcp/{body['id']}"
    assert body["mcp_token"].startswith("mcp_")
    fetched = client.get(f"/v1/mailboxes/{body['id']}", headers=account.headers).json()
    assert "mcp_token" not in fetched
