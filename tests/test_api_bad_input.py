"""Bad input of every kind gets a 4xx JSON error with a stable code, never a 500 — on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import AccountKey
from tests.support.api import (
    UNKNOWN_ACCOUNT,
    UNKNOWN_MAILBOX,
    assert_error,
    create_connection,
    create_credential,
    create_mailbox,
)

ONE_MIB = 1_048_576
JSON_HEADERS = {"Content-Type": "application/json"}


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _write_routes(mailbox_id: str, credential_id: str) -> list[tuple[str, str]]:
    return [
        ("POST", "/v1/mailboxes"),
        ("PUT", f"/v1/mailboxes/{mailbox_id}"),
        ("POST", f"/v1/mailboxes/{mailbox_id}/connections"),
        ("POST", "/v1/credentials"),
        ("PUT", f"/v1/credentials/{credential_id}"),
    ]


@pytest.fixture
def write_routes(client: TestClient, account: AccountKey) -> list[tuple[str, str]]:
    return _write_routes(create_mailbox(client, account)["id"], create_credential(client, account)["id"])


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"name": "a",}', b"not json", b'{"name": "a"} trailing', b"\xff\xfe\x00", b"[" * 100_000, b'{"a": NaN'],
    ids=["open-brace", "trailing-comma", "words", "trailing-data", "binary", "deep-array", "nan-open"],
)
def test_malformed_json_is_a_client_error_on_every_write_route(
    client: TestClient, account: AccountKey, write_routes: list[tuple[str, str]], raw: bytes
) -> None:
    for method, path in write_routes:
        response = client.request(method, path, content=raw, headers={**account.headers, **JSON_HEADERS})

        assert 400 <= response.status_code < 500, f"{method} {path}: {response.status_code} {response.text}"
        assert_error(response, response.status_code)


@pytest.mark.parametrize("body", [[], [{"name": "a"}], "a string", 42, None, True], ids=repr)
def test_a_body_that_is_not_an_object_is_refused_on_every_write_route(
    client: TestClient, account: AccountKey, write_routes: list[tuple[str, str]], body: object
) -> None:
    for method, path in write_routes:
        response = client.request(method, path, json=body, headers=account.headers)

        assert_error(response, 422, "invalid_request")


def test_a_missing_body_is_refused(client: TestClient, account: AccountKey) -> None:
    for path in ("/v1/mailboxes", "/v1/credentials"):
        response = client.post(path, headers=account.headers)

        assert_error(response, 422, "invalid_request")


def test_a_body_sent_as_text_plain_is_refused(client: TestClient, account: AccountKey) -> None:
    response = client.post(
        "/v1/mailboxes", content=b'{"name": "a"}', headers={**account.headers, "Content-Type": "text/plain"}
    )

    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {"name": 42},
        {"name": ["a"]},
        {"name": {"a": 1}},
        {"name": None},
        {"name": "a", "webhook_url": 5},
        {"name": "a", "templates": ["x"]},
        {"name": "a", "templates": {"ok": 5}},
        {"name": "a", "signing_credential_id": 7},
        {"name": "a", "webhook_auth_credential_id": {"id": "x"}},
    ],
    ids=repr,
)
def test_wrong_types_in_a_mailbox_are_refused(client: TestClient, account: AccountKey, body: dict[str, Any]) -> None:
    response = client.post("/v1/mailboxes", json=body, headers=account.headers)

    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a", "unknown": 1},
        {"name": "a", "mcp_token": "mcp_chosen"},
        {"name": "a", "id": UNKNOWN_MAILBOX},
        {"name": "a", "status": "paused"},
        {"name": "a", "account_id": UNKNOWN_ACCOUNT},
    ],
    ids=repr,
)
def test_unknown_or_read_only_fields_are_refused(client: TestClient, account: AccountKey, body: dict[str, Any]) -> None:
    mailbox = create_mailbox(client, account)

    created = client.post("/v1/mailboxes", json=body, headers=account.headers)
    updated = client.put(f"/v1/mailboxes/{mailbox['id']}", json=body, headers=account.headers)

    assert_error(created, 422, "invalid_request")
    assert_error(updated, 422, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n" * 201},
        {"name": ""},
        {"name": "   "},
        {"name": "a", "templates": {"t": "x" * 8_193}},
        {"name": "a", "templates": {f"t{i}": "x" for i in range(33)}},
        {"name": "a", "templates": {"Bad-Name": "x"}},
        {"name": "a", "templates": {"t" * 33: "x"}},
        {"name": "a", "webhook_url": "https://example.test/" + "p" * 2_100},
        {"name": "a", "signing_credential_id": "cred_" + "A" * 5_000},
    ],
    ids=[
        "long-name",
        "empty-name",
        "blank-name",
        "long-template",
        "too-many-templates",
        "bad-template-name",
        "long-template-name",
        "long-url",
        "long-ref",
    ],
)
def test_oversized_or_malformed_mailbox_fields_are_refused(
    client: TestClient, account: AccountKey, body: dict[str, Any]
) -> None:
    response = client.post("/v1/mailboxes", json=body, headers=account.headers)

    assert_error(response, 422, "invalid_request")
    assert client.get("/v1/mailboxes", headers=account.headers).json()["items"] == []


def test_fields_at_their_limits_are_accepted(client: TestClient, account: AccountKey) -> None:
    body = {
        "name": "n" * 200,
        "templates": {f"focal_e{i}": "x" * 8_192 for i in range(32)},
        "webhook_url": "https://example.test/" + "p" * 2_000,
    }

    response = client.post("/v1/mailboxes", json=body, headers=account.headers)

    assert response.status_code == 201, response.text
    assert len(response.json()["templates"]) == 32


@pytest.mark.parametrize(
    "body",
    [
        {"platform": "telegram", "config": "x"},
        {"platform": "telegram", "config": ["x"]},
        {"platform": "telegram", "config": {"blob": "x" * 17_000}},
        {"platform": "telegram", "config": _nested(33)},
        {"platform": "telegram", "config": {"nul": "a\x00b"}},
        {"platform": "telegram", "config": {"a\x00": 1}},
        {"platform": "telegram", "config": {"deep": [[["\x00"]]]}},
        {"platform": "telegram", "secrets": {"1bad": "v"}},
        {"platform": "telegram", "secrets": {"token": ""}},
        {"platform": "telegram", "secrets": {"token": 5}},
        {"platform": "telegram", "secrets": {"token": "v" * 16_385}},
        {"platform": "telegram", "secrets": {f"s{i}": "v" for i in range(17)}},
        {"platform": "telegram", "secrets": ["token"]},
        {"platform": "telegram", "inbound_token": "inb_chosen"},
        {"config": {}},
    ],
    ids=[
        "config-string",
        "config-list",
        "config-oversized",
        "config-too-deep",
        "config-nul-value",
        "config-nul-key",
        "config-nul-nested",
        "secret-bad-name",
        "secret-empty",
        "secret-int",
        "secret-oversized",
        "too-many-secrets",
        "secrets-list",
        "chosen-token",
        "no-platform",
    ],
)
def test_malformed_connection_bodies_are_refused(client: TestClient, account: AccountKey, body: dict[str, Any]) -> None:
    mailbox = create_mailbox(client, account)

    response = client.post(f"/v1/mailboxes/{mailbox['id']}/connections", json=body, headers=account.headers)

    assert_error(response, 422, "invalid_request")
    assert client.get(f"/v1/mailboxes/{mailbox['id']}/connections", headers=account.headers).json()["items"] == []


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_in_config_are_refused(client: TestClient, account: AccountKey, number: bytes) -> None:
    mailbox = create_mailbox(client, account)
    raw = b'{"platform": "slack", "config": {"rate": ' + number + b"}}"

    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections", content=raw, headers={**account.headers, **JSON_HEADERS}
    )

    assert_error(response, 422, "invalid_request")


def test_config_at_the_depth_limit_is_stored_and_read_back(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    config = _nested(32)

    created = create_connection(client, account, mailbox["id"], config=config)

    fetched = client.get(f"/v1/connections/{created['id']}", headers=account.headers)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["config"] == config


def test_large_integers_and_unicode_in_config_round_trip(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    config = {"big": 10**40, "neg": -(2**70), "text": "héllo ✓ 𝄞 \t\n", "list": [True, None, 1.5]}

    created = create_connection(client, account, mailbox["id"], config=config)

    fetched = client.get(f"/v1/connections/{created['id']}", headers=account.headers).json()
    assert fetched["config"] == config


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a\x00b"},
        {"name": "a", "templates": {"t": "x\x00"}},
    ],
    ids=["nul-in-name", "nul-in-template"],
)
def test_nul_characters_are_refused_rather_than_crashing_the_database(
    client: TestClient, account: AccountKey, body: dict[str, Any]
) -> None:
    mailbox = create_mailbox(client, account)

    created = client.post("/v1/mailboxes", json=body, headers=account.headers)
    updated = client.put(f"/v1/mailboxes/{mailbox['id']}", json=body, headers=account.headers)

    assert_error(created, 422, "invalid_request")
    assert_error(updated, 422, "invalid_request")


def test_a_nul_character_inside_a_secret_value_is_fine_because_it_is_sealed(
    client: TestClient, account: AccountKey
) -> None:
    response = client.post(
        "/v1/credentials", json={"name": "bin", "kind": "platform", "value": "a\x00b"}, headers=account.headers
    )

    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "raw",
    [b'{"name": "a\\ud800"}', b'{"name": "a", "\\udfff": 1}', b'{"name": "a", "templates": {"\\ud800": "x"}}'],
    ids=["lone-surrogate-value", "lone-surrogate-key", "lone-surrogate-template-name"],
)
def test_lone_surrogates_are_refused(client: TestClient, account: AccountKey, raw: bytes) -> None:
    response = client.post("/v1/mailboxes", content=raw, headers={**account.headers, **JSON_HEADERS})

    assert_error(response, 422, "invalid_request")


def test_a_body_over_one_mib_is_refused_with_413(client: TestClient, account: AccountKey) -> None:
    body = b'{"name": "' + b"a" * ONE_MIB + b'"}'

    response = client.post("/v1/mailboxes", content=body, headers={**account.headers, **JSON_HEADERS})

    assert_error(response, 413, "payload_too_large")


def test_a_chunked_body_over_one_mib_is_refused_with_413(client: TestClient, account: AccountKey) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(17):
            yield b"a" * 65_536
        yield b'"}'

    response = client.post("/v1/credentials", content=chunks(), headers={**account.headers, **JSON_HEADERS})

    assert_error(response, 413, "payload_too_large")
    assert client.get("/v1/credentials", headers=account.headers).json()["items"] == []


def test_a_body_just_under_one_mib_is_read_and_validated(client: TestClient, account: AccountKey) -> None:
    padding = ONE_MIB - 100
    body = b'{"name": "a", "pad": "' + b"x" * padding + b'"}'

    response = client.post("/v1/mailboxes", content=body, headers={**account.headers, **JSON_HEADERS})

    assert_error(response, 422, "invalid_request")


def test_a_non_numeric_content_length_is_refused(client: TestClient, account: AccountKey) -> None:
    response = client.post(
        "/v1/mailboxes",
        content=b'{"name": "a"}',
        headers={**account.headers, **JSON_HEADERS, "Content-Length": "lots"},
    )

    assert 400 <= response.status_code < 500


BAD_IDS = [
    "x",
    "mbx_",
    "conn_",
    "cred_",
    "mbx_01JD3zzzzzzzzzzzzzzzzzzzzz",
    "mbx_" + "0" * 27,
    "mbx_01JD3ZZZZZZZZZZZZZZZZZZZZI",
    "%00",
    "%E2%9C%93",
    "%2e%2e",
    "'; DROP TABLE mailboxes; --",
    "a" * 5_000,
]


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=range(len(BAD_IDS)))
def test_malformed_or_unknown_ids_in_paths_are_not_found(client: TestClient, account: AccountKey, bad_id: str) -> None:
    routes = [
        ("GET", f"/v1/mailboxes/{bad_id}", None),
        ("PUT", f"/v1/mailboxes/{bad_id}", {"name": "x"}),
        ("DELETE", f"/v1/mailboxes/{bad_id}", None),
        ("GET", f"/v1/mailboxes/{bad_id}/health", None),
        ("POST", f"/v1/mailboxes/{bad_id}/unpause", None),
        ("GET", f"/v1/mailboxes/{bad_id}/connections", None),
        ("POST", f"/v1/mailboxes/{bad_id}/connections", {"platform": "slack"}),
        ("GET", f"/v1/connections/{bad_id}", None),
        ("DELETE", f"/v1/connections/{bad_id}", None),
        ("GET", f"/v1/credentials/{bad_id}", None),
        ("PUT", f"/v1/credentials/{bad_id}", {"name": "x"}),
        ("DELETE", f"/v1/credentials/{bad_id}", None),
    ]

    for method, path, body in routes:
        response = client.request(method, path, json=body, headers=account.headers)

        assert response.status_code in (404, 405), f"{method} {path}: {response.status_code} {response.text}"
        assert_error(response, response.status_code)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"cursor": "x" * 65},
        {"cursor": "garbage"},
        {"cursor": "\x00"},
        {"include_archived": "perhaps"},
    ],
    ids=repr,
)
def test_bad_list_parameters_are_refused(client: TestClient, account: AccountKey, params: dict[str, str]) -> None:
    mailbox = create_mailbox(client, account)

    for path in ("/v1/mailboxes", f"/v1/mailboxes/{mailbox['id']}/connections", "/v1/credentials"):
        if "include_archived" in params and path != "/v1/mailboxes":
            continue
        response = client.get(path, params=params, headers=account.headers)

        assert_error(response, 422)


def test_an_unsupported_method_is_a_json_405(client: TestClient, account: AccountKey) -> None:
    response = client.patch("/v1/mailboxes", json={"name": "a"}, headers=account.headers)

    assert_error(response, 405, "method_not_allowed")


def test_an_unknown_route_is_a_json_404(client: TestClient, account: AccountKey) -> None:
    response = client.get("/v1/nothing-here", headers=account.headers)

    assert_error(response, 404, "not_found")


def test_validation_errors_list_where_and_what_but_not_the_input(client: TestClient, account: AccountKey) -> None:
    marker = "do-not-echo-this-input-6e1f"

    response = client.post(
        "/v1/mailboxes", json={"name": "a", "webhook_url": f"ftp://{marker}", marker: 1}, headers=account.headers
    )

    body = assert_error(response, 422, "invalid_request")
    locations = [error["loc"] for error in body["errors"]]
    assert ["body", "webhook_url"] in locations
    assert all(set(error) <= {"loc", "msg", "type"} for error in body["errors"])
    assert f"ftp://{marker}" not in response.text
