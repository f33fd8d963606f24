"""/v1/credentials: secrets go in sealed, never come back out, and are deleted only when nothing live uses them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from chatbox.domain.ids import is_valid_id
from chatbox.runtime import Runtime
from chatbox.services.credentials import reveal
from chatbox.store.models import Credential
from tests.conftest import AccountKey
from tests.support.api import (
    UNKNOWN_CREDENTIAL,
    UNKNOWN_MAILBOX,
    assert_error,
    collect_pages,
    create_connection,
    create_credential,
    create_mailbox,
)

KINDS = ["hmac_signing", "webhook_auth", "mcp_proxy_auth", "platform"]
SECRET = "whsec_c2stbGl2ZS01ZjFjMmE5ZS1wbGFpbnRleHQtbWFya2Vy"  # a valid signing secret, easy to spot


def _revealed(runtime: Runtime, credential_id: str) -> str:
    with runtime.db.session() as db:
        credential = db.get(Credential, credential_id)
        assert credential is not None
        return reveal(runtime.vault, credential)


def _every_stored_value(runtime: Runtime) -> bytes:
    """Every column of every row of every table, as bytes, read straight from the database."""
    chunks: list[bytes] = []
    with runtime.db.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                chunks.extend(value if isinstance(value, bytes) else str(value).encode() for value in row)
    return b"\n".join(chunks)


@pytest.mark.parametrize("kind", KINDS)
def test_create_answers_201_with_metadata_but_never_the_value(
    client: TestClient, account: AccountKey, kind: str
) -> None:
    response = client.post(
        "/v1/credentials", json={"name": "main", "kind": kind, "value": SECRET}, headers=account.headers
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert is_valid_id("credential", body["id"])
    assert (body["name"], body["kind"]) == ("main", kind)
    assert "value" not in body
    assert SECRET not in response.text


def test_value_never_appears_in_any_response(runtime: Runtime, client: TestClient, account: AccountKey) -> None:
    created = create_credential(client, account, kind="hmac_signing", value=SECRET)
    path = f"/v1/credentials/{created['id']}"
    create_mailbox(client, account, signing_credential_id=created["id"])

    responses = [
        client.get(path, headers=account.headers),
        client.get("/v1/credentials", headers=account.headers),
        client.put(path, json={"name": "renamed"}, headers=account.headers),
        client.delete(path, headers=account.headers),
        client.get("/v1/mailboxes", headers=account.headers),
    ]

    assert [r.status_code for r in responses] == [200, 200, 200, 409, 200]
    for response in responses:
        assert SECRET not in response.text
    assert _revealed(runtime, created["id"]) == SECRET


def test_get_returns_the_credentials_metadata(client: TestClient, account: AccountKey) -> None:
    created = create_credential(client, account, kind="webhook_auth", name="Bearer for agent")

    response = client.get(f"/v1/credentials/{created['id']}", headers=account.headers)

    assert response.status_code == 200
    assert response.json() == created


def test_update_renames_without_touching_the_value(runtime: Runtime, client: TestClient, account: AccountKey) -> None:
    created = create_credential(client, account, value=SECRET)

    response = client.put(f"/v1/credentials/{created['id']}", json={"name": "renamed"}, headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "renamed"
    assert response.json()["kind"] == created["kind"]
    assert _revealed(runtime, created["id"]) == SECRET


def test_update_replaces_the_value_without_returning_it(
    runtime: Runtime, client: TestClient, account: AccountKey
) -> None:
    created = create_credential(client, account, value="old-value-0001")

    response = client.put(f"/v1/credentials/{created['id']}", json={"value": SECRET}, headers=account.headers)

    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    assert response.json()["name"] == created["name"]
    assert _revealed(runtime, created["id"]) == SECRET


def test_update_with_an_empty_body_changes_nothing(runtime: Runtime, client: TestClient, account: AccountKey) -> None:
    created = create_credential(client, account, value=SECRET)

    response = client.put(f"/v1/credentials/{created['id']}", json={}, headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["name"] == created["name"]
    assert _revealed(runtime, created["id"]) == SECRET


def test_update_cannot_change_the_kind(client: TestClient, account: AccountKey) -> None:
    created = create_credential(client, account, kind="hmac_signing")

    response = client.put(f"/v1/credentials/{created['id']}", json={"kind": "platform"}, headers=account.headers)

    assert_error(response, 422, "invalid_request")
    assert client.get(f"/v1/credentials/{created['id']}", headers=account.headers).json()["kind"] == "hmac_signing"


def test_delete_of_an_unused_credential_removes_it(client: TestClient, account: AccountKey) -> None:
    created = create_credential(client, account)

    response = client.delete(f"/v1/credentials/{created['id']}", headers=account.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert_error(client.get(f"/v1/credentials/{created['id']}", headers=account.headers), 404, "not_found")
    assert_error(client.delete(f"/v1/credentials/{created['id']}", headers=account.headers), 404, "not_found")


@pytest.mark.parametrize(
    ("field", "kind"), [("signing_credential_id", "hmac_signing"), ("webhook_auth_credential_id", "webhook_auth")]
)
def test_delete_of_a_credential_a_mailbox_uses_is_a_conflict_until_the_mailbox_lets_go(
    client: TestClient, account: AccountKey, field: str, kind: str
) -> None:
    credential = create_credential(client, account, kind=kind)
    mailbox = create_mailbox(client, account, **{field: credential["id"]})

    refused = client.delete(f"/v1/credentials/{credential['id']}", headers=account.headers)
    client.put(f"/v1/mailboxes/{mailbox['id']}", json={field: None}, headers=account.headers)
    allowed = client.delete(f"/v1/credentials/{credential['id']}", headers=account.headers)

    assert_error(refused, 409, "conflict")
    assert allowed.status_code == 204, allowed.text


def test_delete_of_a_credential_an_archived_mailbox_still_references_is_a_conflict(
    client: TestClient, account: AccountKey
) -> None:
    credential = create_credential(client, account, kind="hmac_signing")
    mailbox = create_mailbox(client, account, signing_credential_id=credential["id"])
    client.delete(f"/v1/mailboxes/{mailbox['id']}", headers=account.headers)

    response = client.delete(f"/v1/credentials/{credential['id']}", headers=account.headers)

    assert_error(response, 409, "conflict")


def test_delete_of_an_active_connections_secret_is_a_conflict(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    create_connection(client, account, mailbox["id"], "telegram", secrets={"bot_token": SECRET})
    (secret,) = client.get("/v1/credentials", headers=account.headers).json()["items"]

    response = client.delete(f"/v1/credentials/{secret['id']}", headers=account.headers)

    assert_error(response, 409, "conflict")
    assert client.get(f"/v1/credentials/{secret['id']}", headers=account.headers).status_code == 200


def test_delete_of_an_archived_connections_secret_is_allowed(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    connection = create_connection(client, account, mailbox["id"], "telegram", secrets={"bot_token": SECRET})
    (secret,) = client.get("/v1/credentials", headers=account.headers).json()["items"]
    client.delete(f"/v1/connections/{connection['id']}", headers=account.headers)

    response = client.delete(f"/v1/credentials/{secret['id']}", headers=account.headers)

    assert response.status_code == 204, response.text
    assert client.get(f"/v1/connections/{connection['id']}", headers=account.headers).json()["status"] == "archived"


def test_archived_connection_does_not_shield_a_secret_the_new_connection_does_not_use(
    client: TestClient, account: AccountKey
) -> None:
    mailbox = create_mailbox(client, account)
    old = create_connection(client, account, mailbox["id"], "telegram", secrets={"bot_token": "old-token-0001"})
    client.delete(f"/v1/connections/{old['id']}", headers=account.headers)
    create_connection(client, account, mailbox["id"], "telegram", secrets={"bot_token": "new-token-0002"})
    old_secret, new_secret = client.get("/v1/credentials", headers=account.headers).json()["items"]

    old_deleted = client.delete(f"/v1/credentials/{old_secret['id']}", headers=account.headers)
    new_deleted = client.delete(f"/v1/credentials/{new_secret['id']}", headers=account.headers)

    assert old_deleted.status_code == 204, old_deleted.text
    assert_error(new_deleted, 409, "conflict")


def test_list_pages_through_every_credential_once(client: TestClient, account: AccountKey) -> None:
    created = [create_credential(client, account, name=f"c{i}")["id"] for i in range(5)]

    pages = collect_pages(client, account, "/v1/credentials", limit=2)

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [c["id"] for page in pages for c in page] == created


@pytest.mark.parametrize("cursor", ["nope", UNKNOWN_MAILBOX, "cred_" + "0" * 25])
def test_list_refuses_a_malformed_cursor(client: TestClient, account: AccountKey, cursor: str) -> None:
    response = client.get("/v1/credentials", params={"cursor": cursor}, headers=account.headers)

    assert_error(response, 422)


def test_another_account_can_neither_read_change_nor_delete_a_credential(
    runtime: Runtime, client: TestClient, account: AccountKey, other_account: AccountKey
) -> None:
    created = create_credential(client, account, value=SECRET)
    path = f"/v1/credentials/{created['id']}"

    attempts = [
        client.get(path, headers=other_account.headers),
        client.put(path, json={"name": "stolen", "value": "overwritten"}, headers=other_account.headers),
        client.delete(path, headers=other_account.headers),
    ]

    for response in attempts:
        assert_error(response, 404, "not_found")
    assert client.get(path, headers=account.headers).json() == created
    assert _revealed(runtime, created["id"]) == SECRET


@pytest.mark.parametrize(
    "credential_id",
    [UNKNOWN_CREDENTIAL, "cred_x", UNKNOWN_MAILBOX, "c" * 300],
    ids=["unknown", "short", "mailbox-id", "long"],
)
def test_unknown_credential_is_not_found(client: TestClient, account: AccountKey, credential_id: str) -> None:
    path = f"/v1/credentials/{credential_id}"

    responses = [
        client.get(path, headers=account.headers),
        client.put(path, json={"name": "x"}, headers=account.headers),
        client.delete(path, headers=account.headers),
    ]

    for response in responses:
        assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n", "kind": "ssh_key", "value": SECRET},
        {"name": "n", "kind": "platform", "value": SECRET, "extra": True},
        {"name": "", "kind": "platform", "value": SECRET},
        {"name": "n" * 201, "kind": "platform", "value": SECRET},
        {"name": "n\x00", "kind": "platform", "value": SECRET},
        {"name": 5, "kind": "platform", "value": SECRET},
        {"kind": "platform", "value": SECRET},
        {"name": "n", "kind": ["platform"], "value": SECRET},
        {"name": "n", "kind": "platform", "value": [SECRET]},
        {"name": "n", "kind": "platform", "value": {"v": SECRET}},
        {"name": "n", "kind": "platform", "value": SECRET * 1000},
    ],
    ids=[
        "unknown-kind",
        "extra-field",
        "empty-name",
        "long-name",
        "nul-in-name",
        "int-name",
        "no-name",
        "list-kind",
        "list-value",
        "object-value",
        "oversized-value",
    ],
)
def test_invalid_create_is_refused_without_echoing_the_value(
    client: TestClient, account: AccountKey, body: dict[str, object]
) -> None:
    response = client.post("/v1/credentials", json=body, headers=account.headers)

    assert_error(response, 422, "invalid_request")
    assert SECRET not in response.text
    assert client.get("/v1/credentials", headers=account.headers).json()["items"] == []


def test_malformed_json_with_a_secret_is_refused_without_echoing_it(client: TestClient, account: AccountKey) -> None:
    raw = '{"name": "n", "kind": "platform", "value": "' + SECRET + '",'

    response = client.post(
        "/v1/credentials", content=raw, headers={**account.headers, "Content-Type": "application/json"}
    )

    assert_error(response, 422, "invalid_request")
    assert SECRET not in response.text


@pytest.mark.parametrize(
    "body",
    [{"value": ""}, {"value": 42}, {"value": SECRET * 1000}, {"name": ""}, {"kind": "hmac_signing", "value": SECRET}],
    ids=["empty-value", "int-value", "oversized-value", "empty-name", "kind-with-value"],
)
def test_invalid_update_is_refused_without_echoing_the_value(
    runtime: Runtime, client: TestClient, account: AccountKey, body: dict[str, object]
) -> None:
    created = create_credential(client, account, value="original-value-0001")

    response = client.put(f"/v1/credentials/{created['id']}", json=body, headers=account.headers)

    assert_error(response, 422, "invalid_request")
    assert SECRET not in response.text
    assert _revealed(runtime, created["id"]) == "original-value-0001"


def test_secrets_are_encrypted_at_rest(runtime: Runtime, client: TestClient, account: AccountKey) -> None:
    direct = "direct-credential-plaintext-7c3e"
    replaced = "replaced-credential-plaintext-91ab"
    platform = "platform-connection-plaintext-d04f"
    credential = create_credential(client, account, kind="webhook_auth", value=direct)
    updated = create_credential(client, account, kind="webhook_auth", name="rotated", value="before-rotation-0001")
    client.put(f"/v1/credentials/{updated['id']}", json={"value": replaced}, headers=account.headers)
    mailbox = create_mailbox(client, account)
    create_connection(client, account, mailbox["id"], "discord", secrets={"bot_token": platform})

    with runtime.db.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, name, kind, key_id, nonce, ciphertext FROM credentials")).all()
    stored = _every_stored_value(runtime)

    assert len(rows) == 3
    for row in rows:
        for value in row:
            raw = value if isinstance(value, bytes) else str(value).encode()
            for plaintext in (direct, replaced, platform):
                assert plaintext.encode() not in raw
    for plaintext in (direct, replaced, platform):
        assert plaintext.encode() not in stored
    assert _revealed(runtime, credential["id"]) == direct
    assert _revealed(runtime, updated["id"]) == replaced


def test_secrets_are_not_in_the_sqlite_file(runtime: Runtime, client: TestClient, account: AccountKey) -> None:
    url = make_url(runtime.db.url)
    if url.get_backend_name() != "sqlite" or not url.database:
        pytest.skip("the raw-file check applies to SQLite; Postgres is covered by the table scan")
    plaintext = "sqlite-file-plaintext-marker-3a9d"
    create_credential(client, account, kind="platform", value=plaintext)
    runtime.db.dispose()  # checkpoint the WAL so the main file holds the row too

    files = [path for path in Path(url.database).parent.iterdir() if path.name.startswith(Path(url.database).name)]

    assert files
    for path in files:
        assert plaintext.encode() not in path.read_bytes()


def _whsec(size: int) -> str:
    """A Standard Webhooks secret over `size` bytes."""
    return "whsec_" + base64.b64encode(bytes(range(7, 7 + size))).decode()


@pytest.mark.parametrize(
    "value",
    [_whsec(16), _whsec(23), _whsec(65), _whsec(128), "whsec_", "s3cret-chosen-by-the-tenant", "whsec_not base64!"],
    ids=["16-bytes", "23-bytes", "65-bytes", "128-bytes", "empty-key", "no-prefix", "not-base64"],
)
def test_a_chosen_hmac_signing_secret_must_meet_the_standard_webhooks_length(
    client: TestClient, account: AccountKey, value: str
) -> None:
    created = client.post(
        "/v1/credentials", json={"name": "sig", "kind": "hmac_signing", "value": value}, headers=account.headers
    )
    existing = create_credential(client, account, kind="hmac_signing", name="kept")
    replaced = client.put(f"/v1/credentials/{existing['id']}", json={"value": value}, headers=account.headers)

    chosen = value.removeprefix("whsec_")
    for response in (created, replaced):
        body = assert_error(response, 422, "invalid_input")
        assert "whsec_" in body["message"] or "24-64 bytes" in body["message"]
        assert not chosen or chosen not in response.text
    assert [c["name"] for c in client.get("/v1/credentials", headers=account.headers).json()["items"]] == ["kept"]


@pytest.mark.parametrize("size", [24, 32, 64])
def test_a_chosen_hmac_signing_secret_of_24_to_64_bytes_is_taken(
    runtime: Runtime, client: TestClient, account: AccountKey, size: int
) -> None:
    created = create_credential(client, account, kind="hmac_signing", value=_whsec(size))

    assert _revealed(runtime, created["id"]) == _whsec(size)
