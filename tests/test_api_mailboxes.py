"""/v1/mailboxes: create (MCP token once), read, update, archive, health, unpause, pagination, isolation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chatbox.domain.ids import hash_token, is_valid_id, new_id
from chatbox.runtime import Runtime
from chatbox.store.models import Mailbox
from tests.conftest import AccountKey
from tests.support.api import (
    UNKNOWN_CONNECTION,
    UNKNOWN_CREDENTIAL,
    UNKNOWN_MAILBOX,
    assert_error,
    collect_pages,
    connection_body,
    create_credential,
    create_mailbox,
)

PUBLIC_URL = "https://chatbox.example.test"


def test_create_answers_201_with_id_mcp_url_and_token(client: TestClient, account: AccountKey) -> None:
    response = client.post("/v1/mailboxes", json={"name": "agent"}, headers=account.headers)

    assert response.status_code == 201, response.text
    body = response.json()
    assert is_valid_id("mailbox", body["id"])
    assert body["mcp_url"] == f"{PUBLIC_URL}/mcp/{body['id']}"
    assert body["mcp_token"].startswith("mcp_")
    assert body["name"] == "agent"
    assert body["status"] == "active"
    assert body["webhook_url"] is None
    assert body["templates"] == {}


def test_create_with_every_field_returns_them(client: TestClient, account: AccountKey) -> None:
    signing = create_credential(client, account, kind="hmac_signing")
    auth = create_credential(client, account, kind="webhook_auth", name="auth")

    body = create_mailbox(
        client,
        account,
        name="  support agent  ",
        webhook_url="https://agent.example.test/hook",
        signing_credential_id=signing["id"],
        webhook_auth_credential_id=auth["id"],
        templates={"notification": "New message from $SENDER_NAME"},
    )

    assert body["name"] == "support agent"
    assert body["webhook_url"] == "https://agent.example.test/hook"
    assert body["signing_credential_id"] == signing["id"]
    assert body["webhook_auth_credential_id"] == auth["id"]
    assert body["templates"] == {"notification": "New message from $SENDER_NAME"}


def test_each_mailbox_gets_its_own_mcp_token(client: TestClient, account: AccountKey) -> None:
    first = create_mailbox(client, account, name="one")
    second = create_mailbox(client, account, name="two")

    assert first["mcp_token"] != second["mcp_token"]
    assert first["id"] != second["id"]


def test_mcp_token_is_never_shown_again(runtime: Runtime, client: TestClient, account: AccountKey) -> None:
    created = create_mailbox(client, account)
    token, mailbox_id = created["mcp_token"], created["id"]
    path = f"/v1/mailboxes/{mailbox_id}"

    later = [
        client.get(path, headers=account.headers),
        client.get("/v1/mailboxes", headers=account.headers),
        client.put(path, json={"name": "renamed"}, headers=account.headers),
        client.get(f"{path}/health", headers=account.headers),
        client.post(f"{path}/unpause", headers=account.headers),
        client.delete(path, headers=account.headers),
        client.get("/v1/mailboxes", params={"include_archived": True}, headers=account.headers),
    ]

    for response in later:
        assert response.status_code == 200, response.text
        assert token not in response.text
        assert hash_token(token) not in response.text
        assert "mcp_token" not in response.text
    with runtime.db.session() as db:
        stored = db.get(Mailbox, mailbox_id)
        assert stored is not None
        assert stored.mcp_token_hash == hash_token(token)


def test_get_returns_the_mailbox_as_created(client: TestClient, account: AccountKey) -> None:
    created = create_mailbox(
        client, account, webhook_url="http://hooks.example.test:9000/in", templates={"focal_message": "x"}
    )

    response = client.get(f"/v1/mailboxes/{created['id']}", headers=account.headers)

    assert response.status_code == 200
    created.pop("mcp_token")
    assert response.json() == created


@pytest.mark.parametrize(
    "url",
    ["http://agent.example.test/hook", "https://agent.example.test:8443/a/b?c=d", "http://93.184.215.14:9000/"],
)
def test_webhook_url_accepts_http_and_https(client: TestClient, account: AccountKey, url: str) -> None:
    response = client.post("/v1/mailboxes", json={"name": "a", "webhook_url": url}, headers=account.headers)

    assert response.status_code == 201, response.text
    assert response.json()["webhook_url"] == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://agent.example.test/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "/relative/path",
        "agent.example.test/hook",
        "not a url",
        "",
        "https://" + "a" * 2100 + ".test/",
    ],
    ids=["ftp", "file", "javascript", "relative", "no-scheme", "words", "empty", "too-long"],
)
def test_webhook_url_refuses_anything_but_http_and_https(client: TestClient, account: AccountKey, url: str) -> None:
    created = client.post("/v1/mailboxes", json={"name": "a", "webhook_url": url}, headers=account.headers)
    mailbox = create_mailbox(client, account)
    updated = client.put(f"/v1/mailboxes/{mailbox['id']}", json={"webhook_url": url}, headers=account.headers)

    assert_error(created, 422, "invalid_request")
    assert_error(updated, 422, "invalid_request")


def test_update_changes_only_the_fields_present(client: TestClient, account: AccountKey) -> None:
    created = create_mailbox(
        client, account, name="agent", webhook_url="https://a.example.test/", templates={"focal_message": "x"}
    )

    response = client.put(f"/v1/mailboxes/{created['id']}", json={"name": "renamed"}, headers=account.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "renamed"
    assert body["webhook_url"] == "https://a.example.test/"
    assert body["templates"] == {"focal_message": "x"}
    assert client.get(f"/v1/mailboxes/{created['id']}", headers=account.headers).json() == body


def test_update_replaces_webhook_url_templates_and_credential_refs(client: TestClient, account: AccountKey) -> None:
    created = create_mailbox(client, account, templates={"notification": "x"})
    signing = create_credential(client, account, kind="hmac_signing")
    auth = create_credential(client, account, kind="webhook_auth", name="auth")
    change = {
        "webhook_url": "https://b.example.test/hook",
        "templates": {"focal_message": "hello $TEXT"},
        "signing_credential_id": signing["id"],
        "webhook_auth_credential_id": auth["id"],
    }

    response = client.put(f"/v1/mailboxes/{created['id']}", json=change, headers=account.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert {field: body[field] for field in change} == change
    assert body["name"] == created["name"]


def test_update_with_null_clears_optional_fields(client: TestClient, account: AccountKey) -> None:
    signing = create_credential(client, account, kind="hmac_signing")
    created = create_mailbox(
        client,
        account,
        webhook_url="https://a.example.test/",
        signing_credential_id=signing["id"],
        templates={"ephemeral": ""},
    )
    clear = {"webhook_url": None, "signing_credential_id": None, "templates": None}

    response = client.put(f"/v1/mailboxes/{created['id']}", json=clear, headers=account.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["webhook_url"] is None
    assert body["signing_credential_id"] is None
    assert body["templates"] == {}


def test_update_with_null_name_is_refused(client: TestClient, account: AccountKey) -> None:
    created = create_mailbox(client, account)

    response = client.put(f"/v1/mailboxes/{created['id']}", json={"name": None}, headers=account.headers)

    assert_error(response, 422)
    assert client.get(f"/v1/mailboxes/{created['id']}", headers=account.headers).json()["name"] == created["name"]


@pytest.mark.parametrize("wrong_kind", ["webhook_auth", "mcp_proxy_auth", "platform"])
def test_signing_credential_must_be_of_kind_hmac_signing(
    client: TestClient, account: AccountKey, wrong_kind: str
) -> None:
    credential = create_credential(client, account, kind=wrong_kind)
    mailbox = create_mailbox(client, account)
    field = {"signing_credential_id": credential["id"]}

    created = client.post("/v1/mailboxes", json={"name": "a", **field}, headers=account.headers)
    updated = client.put(f"/v1/mailboxes/{mailbox['id']}", json=field, headers=account.headers)

    assert_error(created, 422, "invalid_input")
    assert_error(updated, 422, "invalid_input")
    assert client.get(f"/v1/mailboxes/{mailbox['id']}", headers=account.headers).json()["signing_credential_id"] is None


@pytest.mark.parametrize("wrong_kind", ["hmac_signing", "mcp_proxy_auth", "platform"])
def test_webhook_auth_credential_must_be_of_kind_webhook_auth(
    client: TestClient, account: AccountKey, wrong_kind: str
) -> None:
    credential = create_credential(client, account, kind=wrong_kind)
    mailbox = create_mailbox(client, account)
    field = {"webhook_auth_credential_id": credential["id"]}

    created = client.post("/v1/mailboxes", json={"name": "a", **field}, headers=account.headers)
    updated = client.put(f"/v1/mailboxes/{mailbox['id']}", json=field, headers=account.headers)

    assert_error(created, 422, "invalid_input")
    assert_error(updated, 422, "invalid_input")


@pytest.mark.parametrize("field", ["signing_credential_id", "webhook_auth_credential_id"])
@pytest.mark.parametrize(
    "ref",
    [UNKNOWN_CREDENTIAL, "cred_nope", UNKNOWN_MAILBOX, ""],
    ids=["unknown", "malformed", "mailbox-id", "empty"],
)
def test_unknown_or_malformed_credential_ref_is_refused(
    client: TestClient, account: AccountKey, field: str, ref: str
) -> None:
    response = client.post("/v1/mailboxes", json={"name": "a", field: ref}, headers=account.headers)

    assert_error(response, 422, "invalid_input")


def test_another_accounts_credential_is_refused_like_an_unknown_one(
    client: TestClient, account: AccountKey, other_account: AccountKey
) -> None:
    foreign = create_credential(client, other_account, kind="hmac_signing")
    unknown = new_id("credential")

    with_foreign = client.post(
        "/v1/mailboxes", json={"name": "a", "signing_credential_id": foreign["id"]}, headers=account.headers
    )
    with_unknown = client.post(
        "/v1/mailboxes", json={"name": "a", "signing_credential_id": unknown}, headers=account.headers
    )

    foreign_body = assert_error(with_foreign, 422, "invalid_input")
    unknown_body = assert_error(with_unknown, 422, "invalid_input")
    assert foreign_body["message"].replace(foreign["id"], "ID") == unknown_body["message"].replace(unknown, "ID")


def test_delete_archives_the_mailbox(client: TestClient, account: AccountKey) -> None:
    created = create_mailbox(client, account)
    path = f"/v1/mailboxes/{created['id']}"

    response = client.delete(path, headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "archived"
    assert client.get(path, headers=account.headers).json()["status"] == "archived"


def test_archived_mailbox_is_listed_only_when_asked(client: TestClient, account: AccountKey) -> None:
    kept = create_mailbox(client, account, name="kept")
    archived = create_mailbox(client, account, name="archived")
    client.delete(f"/v1/mailboxes/{archived['id']}", headers=account.headers)

    default = client.get("/v1/mailboxes", headers=account.headers).json()
    everything = client.get("/v1/mailboxes", params={"include_archived": "true"}, headers=account.headers).json()

    assert [m["id"] for m in default["items"]] == [kept["id"]]
    assert [m["id"] for m in everything["items"]] == [kept["id"], archived["id"]]


def test_archiving_twice_is_harmless(client: TestClient, account: AccountKey) -> None:
    created = create_mailbox(client, account)
    path = f"/v1/mailboxes/{created['id']}"
    client.delete(path, headers=account.headers)

    again = client.delete(path, headers=account.headers)

    assert again.status_code == 200
    assert again.json()["status"] == "archived"


def test_archived_mailbox_refuses_updates_unpause_and_new_connections(client: TestClient, account: AccountKey) -> None:
    created = create_mailbox(client, account)
    path = f"/v1/mailboxes/{created['id']}"
    client.delete(path, headers=account.headers)

    update = client.put(path, json={"name": "back"}, headers=account.headers)
    unpause = client.post(f"{path}/unpause", headers=account.headers)
    connect = client.post(f"{path}/connections", json=connection_body("slack"), headers=account.headers)

    assert_error(update, 409, "conflict")
    assert_error(unpause, 409, "conflict")
    assert_error(connect, 409, "conflict")
    assert client.get(path, headers=account.headers).json()["name"] == created["name"]


def test_new_mailbox_health_reports_nothing_delivered(client: TestClient, account: AccountKey) -> None:
    created = create_mailbox(client, account)

    response = client.get(f"/v1/mailboxes/{created['id']}/health", headers=account.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "active"
    assert body["consecutive_failures"] == 0
    assert (body["delivered"], body["pending"], body["dead_letters"]) == (0, 0, 0)
    assert body["last_success_at"] is None
    assert body["last_error"] is None


def test_unpause_makes_a_paused_mailbox_active(runtime: Runtime, client: TestClient, account: AccountKey) -> None:
    created = create_mailbox(client, account)
    with runtime.db.session() as db:
        stored = db.get(Mailbox, created["id"])
        assert stored is not None
        stored.status = "paused"
        db.commit()
    assert client.get(f"/v1/mailboxes/{created['id']}/health", headers=account.headers).json()["status"] == "paused"

    response = client.post(f"/v1/mailboxes/{created['id']}/unpause", headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert client.get(f"/v1/mailboxes/{created['id']}", headers=account.headers).json()["status"] == "active"


def test_list_pages_through_every_mailbox_once_in_creation_order(client: TestClient, account: AccountKey) -> None:
    created = [create_mailbox(client, account, name=f"m{i}")["id"] for i in range(5)]

    pages = collect_pages(client, account, "/v1/mailboxes", limit=2)

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [m["id"] for page in pages for m in page] == created


def test_list_ends_with_a_null_cursor_when_the_last_page_is_full(client: TestClient, account: AccountKey) -> None:
    for i in range(4):
        create_mailbox(client, account, name=f"m{i}")

    pages = collect_pages(client, account, "/v1/mailboxes", limit=2)

    assert [len(page) for page in pages] == [2, 2]


def test_list_of_an_empty_account_is_one_empty_page(client: TestClient, account: AccountKey) -> None:
    response = client.get("/v1/mailboxes", headers=account.headers)

    assert response.json() == {"items": [], "next_cursor": None}


def test_list_default_page_holds_fifty(client: TestClient, account: AccountKey) -> None:
    for i in range(51):
        create_mailbox(client, account, name=f"m{i}")

    first = client.get("/v1/mailboxes", headers=account.headers).json()

    assert len(first["items"]) == 50
    assert first["next_cursor"] == first["items"][-1]["id"]


@pytest.mark.parametrize(
    "cursor",
    ["garbage", UNKNOWN_CONNECTION, "mbx_" + "a" * 26, "mbx_" + "Z" * 200],
    ids=["garbage", "other-kind", "lowercase", "long"],
)
def test_list_refuses_a_malformed_cursor(client: TestClient, account: AccountKey, cursor: str) -> None:
    response = client.get("/v1/mailboxes", params={"cursor": cursor}, headers=account.headers)

    assert_error(response, 422)


def test_list_refuses_a_limit_out_of_range(client: TestClient, account: AccountKey) -> None:
    for limit in ["0", "-1", "201", "abc", "1.5", "99999999999999999999999"]:
        response = client.get("/v1/mailboxes", params={"limit": limit}, headers=account.headers)

        assert_error(response, 422, "invalid_request")


def test_another_account_cannot_read_change_or_archive_a_mailbox(
    client: TestClient, account: AccountKey, other_account: AccountKey
) -> None:
    created = create_mailbox(client, account, name="mine")
    path = f"/v1/mailboxes/{created['id']}"

    attempts = [
        client.get(path, headers=other_account.headers),
        client.put(path, json={"name": "stolen"}, headers=other_account.headers),
        client.delete(path, headers=other_account.headers),
        client.get(f"{path}/health", headers=other_account.headers),
        client.post(f"{path}/unpause", headers=other_account.headers),
        client.get(f"{path}/connections", headers=other_account.headers),
        client.post(f"{path}/connections", json=connection_body("slack"), headers=other_account.headers),
    ]

    for response in attempts:
        assert_error(response, 404, "not_found")
    after = client.get(path, headers=account.headers).json()
    assert (after["name"], after["status"]) == ("mine", "active")


def test_lists_never_mix_accounts(client: TestClient, account: AccountKey, other_account: AccountKey) -> None:
    mine = create_mailbox(client, account, name="mine")
    theirs = create_mailbox(client, other_account, name="theirs")

    my_list = client.get("/v1/mailboxes", headers=account.headers).json()
    their_list = client.get("/v1/mailboxes", headers=other_account.headers).json()

    assert [m["id"] for m in my_list["items"]] == [mine["id"]]
    assert [m["id"] for m in their_list["items"]] == [theirs["id"]]
