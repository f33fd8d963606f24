"""/v1/api-keys: create (the key once), list (name, prefix, created, last used), revoke at once, never the last."""

from __future__ import annotations

from fastapi.testclient import TestClient

from chatbox.runtime import Runtime
from chatbox.services.accounts import authenticate_api_key
from tests.conftest import AccountKey
from tests.support.api import assert_error


def create_key(client: TestClient, account: AccountKey, name: str = "ci") -> dict[str, str]:
    response = client.post("/v1/api-keys", json={"name": name}, headers=account.headers)
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def test_a_created_key_is_shown_once_and_works(client: TestClient, account: AccountKey) -> None:
    created = create_key(client, account)
    headers = {"Authorization": f"Bearer {created['key']}"}

    used = client.get("/v1/mailboxes", headers=headers)
    listed = client.get("/v1/api-keys", headers=account.headers)

    assert created["id"].startswith("key_") and created["key"].startswith(created["prefix"])
    assert used.status_code == 200
    assert listed.status_code == 200
    by_name = {k["name"]: k for k in listed.json()["items"]}
    assert set(by_name) == {"default", "ci"}
    assert by_name["ci"]["prefix"] == created["prefix"] and by_name["ci"]["last_used_at"] is not None
    assert set(by_name["ci"]) == {"id", "name", "prefix", "created_at", "last_used_at"}
    assert created["key"] not in listed.text


def test_a_revoked_key_is_refused_on_its_very_next_request(client: TestClient, account: AccountKey) -> None:
    created = create_key(client, account)
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert client.get("/v1/mailboxes", headers=headers).status_code == 200

    revoked = client.delete(f"/v1/api-keys/{created['id']}", headers=headers)  # a key may revoke itself
    refused = client.get("/v1/mailboxes", headers=headers)

    assert revoked.status_code == 204
    assert_error(refused, 401, "unauthorized")
    assert client.get("/v1/mailboxes", headers=account.headers).status_code == 200
    listed = client.get("/v1/api-keys", headers=account.headers).json()["items"]
    assert [k["name"] for k in listed] == ["default"]


def test_the_last_key_cannot_be_revoked(client: TestClient, runtime: Runtime, account: AccountKey) -> None:
    [only] = client.get("/v1/api-keys", headers=account.headers).json()["items"]

    response = client.delete(f"/v1/api-keys/{only['id']}", headers=account.headers)

    body = assert_error(response, 409, "conflict")
    assert "last API key" in body["message"]
    with runtime.db.session() as db:
        assert authenticate_api_key(db, account.api_key) == account.account_id


def test_another_accounts_key_is_not_found(client: TestClient, account: AccountKey, other_account: AccountKey) -> None:
    created = create_key(client, account)

    response = client.delete(f"/v1/api-keys/{created['id']}", headers=other_account.headers)
    unknown = client.delete("/v1/api-keys/key_01JD3ZZZZZZZZZZZZZZZZZZZZZ", headers=other_account.headers)
    malformed = client.delete("/v1/api-keys/nope", headers=other_account.headers)

    assert_error(response, 404, "not_found")
    assert_error(unknown, 404, "not_found")
    assert_error(malformed, 404, "not_found")
    assert client.get("/v1/mailboxes", headers={"Authorization": f"Bearer {created['key']}"}).status_code == 200


def test_bad_key_names_are_422(client: TestClient, account: AccountKey) -> None:
    for body in ({}, {"name": ""}, {"name": "x" * 201}, {"name": "ci", "extra": 1}):
        assert_error(client.post("/v1/api-keys", json=body, headers=account.headers), 422)
