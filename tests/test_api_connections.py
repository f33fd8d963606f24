"""Connections: one active per platform per mailbox, the inbound token shown once, secrets never returned."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chatbox.domain.ids import hash_token, is_valid_id
from chatbox.runtime import Runtime
from chatbox.store.models import Connection
from tests.conftest import AccountKey
from tests.support.api import (
    PLATFORM_SECRETS,
    UNKNOWN_CONNECTION,
    UNKNOWN_MAILBOX,
    assert_error,
    collect_pages,
    connection_body,
    create_connection,
    create_mailbox,
)

PUBLIC_URL = "https://chatbox.example.test"
PLATFORMS = ["signal", "telegram", "discord", "slack"]
SECRET = "xoxb-very-secret-bot-token-4242"


@pytest.mark.parametrize(
    ("platform", "ingest_template"),
    [
        ("telegram", "/v1/ingest/telegram/{id}"),
        ("slack", "/v1/ingest/slack/{id}"),
        ("signal", "/v1/connections/{id}/messages"),
        ("discord", "/v1/connections/{id}/messages"),
    ],
)
def test_create_answers_201_with_id_inbound_token_and_ingest_url(
    client: TestClient, account: AccountKey, platform: str, ingest_template: str
) -> None:
    mailbox = create_mailbox(client, account)

    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json=connection_body(platform, config={"team": "T1"})
        | {"secrets": {**PLATFORM_SECRETS.get(platform, {}), "token": SECRET}},
        headers=account.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert is_valid_id("connection", body["id"])
    assert body["inbound_token"].startswith("inb_")
    assert body["ingest_url"] == PUBLIC_URL + ingest_template.format(id=body["id"])
    assert body["mailbox_id"] == mailbox["id"]
    assert body["platform"] == platform
    assert body["config"] == {"team": "T1"}
    assert body["secret_names"] == sorted({"token", *PLATFORM_SECRETS.get(platform, {})})
    assert body["status"] == "active"


def test_create_with_only_a_platform_uses_empty_config_and_secrets(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)

    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections", json={"platform": "signal"}, headers=account.headers
    )

    assert response.status_code == 201, response.text
    assert (response.json()["config"], response.json()["secret_names"]) == ({}, [])


def test_inbound_token_and_secret_values_are_never_shown_again(
    runtime: Runtime, client: TestClient, account: AccountKey
) -> None:
    mailbox = create_mailbox(client, account)
    created = create_connection(client, account, mailbox["id"], "slack", secrets={"bot_token": SECRET})
    token = created["inbound_token"]

    later = [
        client.get(f"/v1/connections/{created['id']}", headers=account.headers),
        client.get(f"/v1/mailboxes/{mailbox['id']}/connections", headers=account.headers),
        client.get("/v1/credentials", headers=account.headers),
        client.delete(f"/v1/connections/{created['id']}", headers=account.headers),
    ]

    assert SECRET not in str(created)
    for response in later:
        assert response.status_code == 200, response.text
        assert token not in response.text
        assert hash_token(token) not in response.text
        assert "inbound_token" not in response.text
        assert SECRET not in response.text
    with runtime.db.session() as db:
        stored = db.get(Connection, created["id"])
        assert stored is not None
        assert stored.inbound_token_hash == hash_token(token)


def test_get_returns_the_connection_as_created(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    created = create_connection(client, account, mailbox["id"], "discord", config={"guild": 1, "nested": {"a": [1]}})

    response = client.get(f"/v1/connections/{created['id']}", headers=account.headers)

    assert response.status_code == 200
    created.pop("inbound_token")
    assert response.json() == created


@pytest.mark.parametrize("platform", PLATFORMS)
def test_second_active_connection_of_a_platform_is_a_conflict(
    client: TestClient, account: AccountKey, platform: str
) -> None:
    mailbox = create_mailbox(client, account)
    first = create_connection(client, account, mailbox["id"], platform)

    second = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections", json=connection_body(platform), headers=account.headers
    )

    assert_error(second, 409, "conflict")
    listed = client.get(f"/v1/mailboxes/{mailbox['id']}/connections", headers=account.headers).json()
    assert [c["id"] for c in listed["items"]] == [first["id"]]


def test_a_mailbox_holds_one_connection_of_each_platform(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)

    created = [create_connection(client, account, mailbox["id"], platform)["id"] for platform in PLATFORMS]

    listed = client.get(f"/v1/mailboxes/{mailbox['id']}/connections", headers=account.headers).json()
    assert [c["id"] for c in listed["items"]] == created


def test_the_same_platform_may_serve_different_mailboxes(client: TestClient, account: AccountKey) -> None:
    first = create_mailbox(client, account, name="one")
    second = create_mailbox(client, account, name="two")
    create_connection(client, account, first["id"], "telegram")

    response = client.post(
        f"/v1/mailboxes/{second['id']}/connections", json=connection_body("telegram"), headers=account.headers
    )

    assert response.status_code == 201, response.text


def test_delete_archives_the_connection(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    created = create_connection(client, account, mailbox["id"])

    response = client.delete(f"/v1/connections/{created['id']}", headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "archived"
    fetched = client.get(f"/v1/connections/{created['id']}", headers=account.headers)
    assert fetched.json()["status"] == "archived"


def test_archiving_a_connection_twice_is_harmless(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    created = create_connection(client, account, mailbox["id"])
    client.delete(f"/v1/connections/{created['id']}", headers=account.headers)

    again = client.delete(f"/v1/connections/{created['id']}", headers=account.headers)

    assert again.status_code == 200
    assert again.json()["status"] == "archived"


def test_after_archiving_a_new_connection_of_that_platform_is_allowed(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    old = create_connection(client, account, mailbox["id"], "slack")
    client.delete(f"/v1/connections/{old['id']}", headers=account.headers)

    new = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections", json=connection_body("slack"), headers=account.headers
    )

    assert new.status_code == 201, new.text
    assert new.json()["id"] != old["id"]
    assert new.json()["inbound_token"] != old["inbound_token"]
    statuses = {
        c["id"]: c["status"]
        for c in client.get(f"/v1/mailboxes/{mailbox['id']}/connections", headers=account.headers).json()["items"]
    }
    assert statuses == {old["id"]: "archived", new.json()["id"]: "active"}
    third = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections", json=connection_body("slack"), headers=account.headers
    )
    assert_error(third, 409, "conflict")


def test_list_pages_through_every_connection_once(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    created = []
    for platform in ("telegram", "telegram", "telegram", "slack", "signal"):
        connection = create_connection(client, account, mailbox["id"], platform)
        created.append(connection["id"])
        if platform == "telegram":
            client.delete(f"/v1/connections/{connection['id']}", headers=account.headers)

    pages = collect_pages(client, account, f"/v1/mailboxes/{mailbox['id']}/connections", limit=2)

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [c["id"] for page in pages for c in page] == created


def test_list_only_shows_the_mailboxes_own_connections(client: TestClient, account: AccountKey) -> None:
    first = create_mailbox(client, account, name="one")
    second = create_mailbox(client, account, name="two")
    mine = create_connection(client, account, first["id"], "telegram")
    create_connection(client, account, second["id"], "telegram")

    listed = client.get(f"/v1/mailboxes/{first['id']}/connections", headers=account.headers).json()

    assert [c["id"] for c in listed["items"]] == [mine["id"]]


def test_list_refuses_a_cursor_of_another_kind(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)

    response = client.get(
        f"/v1/mailboxes/{mailbox['id']}/connections", params={"cursor": mailbox["id"]}, headers=account.headers
    )

    assert_error(response, 422)


@pytest.mark.parametrize("platform", ["whatsapp", "Telegram", "", "signal ", 7, None])
def test_unknown_platform_is_refused(client: TestClient, account: AccountKey, platform: object) -> None:
    mailbox = create_mailbox(client, account)

    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json=connection_body(platform),
        headers=account.headers,
    )

    # A well-formed name of no registered platform is refused by the platform registry (naming the served
    # ones); anything else by the request schema.
    if platform == "whatsapp":
        assert_error(response, 422, "invalid_input")
        assert "signal, slack, telegram" in response.json()["message"].replace("discord, ", "")
    else:
        assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize("mailbox_id", [UNKNOWN_MAILBOX, "mbx_nope", UNKNOWN_CONNECTION])
def test_connection_on_an_unknown_mailbox_is_not_found(
    client: TestClient, account: AccountKey, mailbox_id: str
) -> None:
    created = client.post(
        f"/v1/mailboxes/{mailbox_id}/connections", json=connection_body("telegram"), headers=account.headers
    )
    listed = client.get(f"/v1/mailboxes/{mailbox_id}/connections", headers=account.headers)

    assert_error(created, 404, "not_found")
    assert_error(listed, 404, "not_found")


@pytest.mark.parametrize(
    "connection_id",
    [UNKNOWN_CONNECTION, "conn_", "conn_" + "x" * 500, UNKNOWN_MAILBOX],
    ids=["unknown", "empty-body", "long", "mailbox-id"],
)
def test_unknown_connection_is_not_found(client: TestClient, account: AccountKey, connection_id: str) -> None:
    fetched = client.get(f"/v1/connections/{connection_id}", headers=account.headers)
    archived = client.delete(f"/v1/connections/{connection_id}", headers=account.headers)

    assert_error(fetched, 404, "not_found")
    assert_error(archived, 404, "not_found")


def test_another_account_can_neither_read_nor_archive_a_connection(
    client: TestClient, account: AccountKey, other_account: AccountKey
) -> None:
    mailbox = create_mailbox(client, account)
    created = create_connection(client, account, mailbox["id"])

    fetched = client.get(f"/v1/connections/{created['id']}", headers=other_account.headers)
    archived = client.delete(f"/v1/connections/{created['id']}", headers=other_account.headers)

    assert_error(fetched, 404, "not_found")
    assert_error(archived, 404, "not_found")
    assert client.get(f"/v1/connections/{created['id']}", headers=account.headers).json()["status"] == "active"


def test_connection_secrets_become_platform_credentials_of_the_account(
    client: TestClient, account: AccountKey, other_account: AccountKey
) -> None:
    mailbox = create_mailbox(client, account)

    create_connection(client, account, mailbox["id"], "telegram", secrets={"bot_token": SECRET, "other": "x" * 20})

    mine = client.get("/v1/credentials", headers=account.headers).json()["items"]
    theirs = client.get("/v1/credentials", headers=other_account.headers).json()["items"]
    assert sorted(c["kind"] for c in mine) == ["platform", "platform"]
    assert theirs == []
