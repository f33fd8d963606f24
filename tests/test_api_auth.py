"""Every /v1 route needs an API key of the calling account; /health needs none, /metrics a loopback client."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chatbox.domain.ids import new_id
from chatbox.runtime import Runtime
from chatbox.services.accounts import issue_api_key, revoke_api_key
from tests.conftest import AccountKey
from tests.support.api import (
    UNKNOWN_CONNECTION,
    UNKNOWN_CREDENTIAL,
    UNKNOWN_MAILBOX,
    assert_error,
    create_connection,
    create_credential,
    create_mailbox,
    scrape_metrics,
)

MAILBOX = UNKNOWN_MAILBOX
CONNECTION = UNKNOWN_CONNECTION
CREDENTIAL = UNKNOWN_CREDENTIAL

# (method, path, JSON body) for every authenticated route the Core service issue names.
PROTECTED_ROUTES: list[tuple[str, str, object]] = [
    ("POST", "/v1/mailboxes", {"name": "agent"}),
    ("GET", "/v1/mailboxes", None),
    ("GET", f"/v1/mailboxes/{MAILBOX}", None),
    ("PUT", f"/v1/mailboxes/{MAILBOX}", {"name": "renamed"}),
    ("DELETE", f"/v1/mailboxes/{MAILBOX}", None),
    ("GET", f"/v1/mailboxes/{MAILBOX}/health", None),
    ("POST", f"/v1/mailboxes/{MAILBOX}/unpause", None),
    ("POST", f"/v1/mailboxes/{MAILBOX}/connections", {"platform": "telegram"}),
    ("GET", f"/v1/mailboxes/{MAILBOX}/connections", None),
    ("GET", f"/v1/connections/{CONNECTION}", None),
    ("DELETE", f"/v1/connections/{CONNECTION}", None),
    ("POST", "/v1/credentials", {"name": "n", "kind": "platform", "value": "v"}),
    ("GET", "/v1/credentials", None),
    ("GET", f"/v1/credentials/{CREDENTIAL}", None),
    ("PUT", f"/v1/credentials/{CREDENTIAL}", {"name": "renamed"}),
    ("DELETE", f"/v1/credentials/{CREDENTIAL}", None),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in PROTECTED_ROUTES]


def _assert_unauthorized(response_status: int, headers: dict[str, str], body: dict[str, object]) -> None:
    assert response_status == 401
    assert headers.get("www-authenticate", "").lower().startswith("bearer")
    assert body["code"] == "unauthorized"
    assert body["message"]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED_ROUTES, ids=ROUTE_IDS)
def test_route_without_authorization_is_refused_with_a_bearer_challenge(
    client: TestClient, method: str, path: str, body: object
) -> None:
    response = client.request(method, path, json=body)

    _assert_unauthorized(response.status_code, dict(response.headers), response.json())


def test_every_route_refuses_an_unknown_api_key(client: TestClient) -> None:
    for method, path, body in PROTECTED_ROUTES:
        response = client.request(method, path, json=body, headers={"Authorization": "Bearer cbk_not-a-real-key"})

        _assert_unauthorized(response.status_code, dict(response.headers), response.json())


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token cbk_x", "cbk_x", ""],
    ids=["basic", "bearer-without-token", "bearer-blank", "other-scheme", "bare-token", "empty"],
)
def test_malformed_authorization_header_is_refused(client: TestClient, account: AccountKey, authorization: str) -> None:
    response = client.get("/v1/mailboxes", headers={"Authorization": authorization})

    _assert_unauthorized(response.status_code, dict(response.headers), response.json())


def test_non_ascii_authorization_header_is_refused_not_crashed(client: TestClient) -> None:
    response = client.get("/v1/mailboxes", headers=[(b"Authorization", b"Bearer \xe9\xff")])

    _assert_unauthorized(response.status_code, dict(response.headers), response.json())


def test_valid_api_key_is_accepted(client: TestClient, account: AccountKey) -> None:
    response = client.get("/v1/mailboxes", headers=account.headers)

    assert response.status_code == 200, response.text


def test_bearer_scheme_is_case_insensitive(client: TestClient, account: AccountKey) -> None:
    response = client.get("/v1/mailboxes", headers={"Authorization": f"bearer {account.api_key}"})

    assert response.status_code == 200, response.text


def test_revoked_api_key_is_refused_while_the_accounts_other_keys_still_work(
    runtime: Runtime, client: TestClient, account: AccountKey
) -> None:
    with runtime.db.session() as db:
        second = issue_api_key(db, account.account_id, "ci")
    second_headers = {"Authorization": f"Bearer {second.secret}"}
    assert client.get("/v1/mailboxes", headers=second_headers).status_code == 200

    with runtime.db.session() as db:
        revoke_api_key(db, second.key_id)
    refused = client.get("/v1/mailboxes", headers=second_headers)
    still_works = client.get("/v1/mailboxes", headers=account.headers)

    _assert_unauthorized(refused.status_code, dict(refused.headers), refused.json())
    assert still_works.status_code == 200


def test_unauthenticated_request_with_an_invalid_body_is_refused_as_unauthorized(client: TestClient) -> None:
    response = client.post("/v1/mailboxes", json={"name": 42, "webhook_url": ["not", "a", "url"]})

    _assert_unauthorized(response.status_code, dict(response.headers), response.json())


def test_another_accounts_key_lists_none_of_this_accounts_resources(
    client: TestClient, account: AccountKey, other_account: AccountKey
) -> None:
    mailbox = create_mailbox(client, account)
    create_credential(client, account)

    mailboxes = client.get("/v1/mailboxes", params={"include_archived": True}, headers=other_account.headers)
    credentials = client.get("/v1/credentials", headers=other_account.headers)

    assert mailboxes.json() == {"items": [], "next_cursor": None}
    assert credentials.json() == {"items": [], "next_cursor": None}
    assert mailbox["id"] not in mailboxes.text


def test_another_accounts_key_gets_not_found_exactly_like_an_unknown_id(
    client: TestClient, account: AccountKey, other_account: AccountKey
) -> None:
    mailbox = create_mailbox(client, account)
    connection = create_connection(client, account, mailbox["id"])
    credential = create_credential(client, account)
    owned = {"mailboxes": mailbox["id"], "connections": connection["id"], "credentials": credential["id"]}
    unknown = {"mailboxes": new_id("mailbox"), "connections": new_id("connection"), "credentials": new_id("credential")}

    for collection, owned_id in owned.items():
        foreign = client.get(f"/v1/{collection}/{owned_id}", headers=other_account.headers)
        missing = client.get(f"/v1/{collection}/{unknown[collection]}", headers=other_account.headers)

        foreign_body = assert_error(foreign, 404, "not_found")
        missing_body = assert_error(missing, 404, "not_found")
        assert foreign_body["message"].replace(owned_id, "ID") == missing_body["message"].replace(
            unknown[collection], "ID"
        )
        assert set(foreign_body) == set(missing_body)


def test_health_needs_no_authorization(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "schema": "ok"}


def test_metrics_need_no_authorization_from_loopback_and_expose_requests_and_queue_depth(
    client: TestClient, account: AccountKey
) -> None:
    client.get("/v1/mailboxes", headers=account.headers)

    response = scrape_metrics(client)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "chatbox_http_requests" in response.text
    assert "# TYPE chatbox_queue_depth gauge" in response.text
    assert 'chatbox_queue_depth{status="pending"} 0.0' in response.text
    assert 'chatbox_deliveries_by_status{status="delivered"} 0.0' in response.text
    assert 'route="/v1/mailboxes"' in response.text
