"""Small helpers for REST API tests: create resources through the API and check error bodies."""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
from fastapi.testclient import TestClient

from tests.conftest import AccountKey

Json = dict[str, Any]
SIGNING_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cy0wMDAx"

# Well-formed ids nothing will ever be created with (fixed, so parametrized test ids stay stable).
UNKNOWN_MAILBOX = "mbx_01JD3ZZZZZZZZZZZZZZZZZZZZZ"
UNKNOWN_CONNECTION = "conn_01JD3ZZZZZZZZZZZZZZZZZZZZZ"
UNKNOWN_CREDENTIAL = "cred_01JD3ZZZZZZZZZZZZZZZZZZZZZ"
UNKNOWN_ACCOUNT = "acct_01JD3ZZZZZZZZZZZZZZZZZZZZZ"


def create_mailbox(client: TestClient, account: AccountKey, name: str = "agent", **fields: Any) -> Json:
    response = client.post("/v1/mailboxes", json={"name": name, **fields}, headers=account.headers)
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def create_credential(
    client: TestClient,
    account: AccountKey,
    kind: str = "webhook_auth",
    name: str = "signing",
    value: str | None = None,
) -> Json:
    if value is None:
        value = SIGNING_SECRET if kind == "hmac_signing" else "s3cret-value-0001"
    response = client.post(
        "/v1/credentials", json={"name": name, "kind": kind, "value": value}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


# What the built-in platforms require at create (their specs' required secrets), for tests that need any valid body.
PLATFORM_SECRETS: dict[str, dict[str, str]] = {
    "telegram": {"bot_token": "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"},
    "slack": {"bot_token": "xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx", "signing_secret": "8f742231b10e"},
}


def connection_body(platform: Any, **fields: Any) -> Json:
    """A valid connection-create body: the platform's required secrets, plus `fields`."""
    secrets = PLATFORM_SECRETS.get(platform, {}) if isinstance(platform, str) else {}
    return {"platform": platform, "secrets": dict(secrets), **fields}


def create_connection(
    client: TestClient,
    account: AccountKey,
    mailbox_id: str,
    platform: str = "telegram",
    *,
    config: Json | None = None,
    secrets: dict[str, str] | None = None,
) -> Json:
    response = client.post(
        f"/v1/mailboxes/{mailbox_id}/connections",
        json={
            "platform": platform,
            "config": config or {},
            "secrets": {**PLATFORM_SECRETS.get(platform, {}), **(secrets or {})},
        },
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def collect_pages(client: TestClient, account: AccountKey, path: str, limit: int) -> list[list[Json]]:
    """Every page of a list route, following next_cursor; fails rather than loop forever."""
    pages: list[list[Json]] = []
    cursor: str | None = None
    for _ in range(100):
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = client.get(path, params=params, headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError(f"{path} never reached a last page")


def scrape_metrics(client: TestClient, headers: dict[str, str] | None = None) -> httpx2.Response:
    """GET /metrics as a client on loopback (without CHATBOX_METRICS_TOKEN, /metrics answers no one else)."""
    return TestClient(client.app, client=("127.0.0.1", 50000)).get("/metrics", headers=headers)


def assert_error(response: httpx.Response | httpx2.Response, status: int, code: str | None = None) -> Json:
    """The response is a JSON error body `{"code", "message"}` with this status (and code, when given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: Json = response.json()
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    if code is not None:
        assert body["code"] == code, body
    return body
