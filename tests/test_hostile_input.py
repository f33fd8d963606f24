"""Hostile input is a 4xx with a clear message on both databases, never a 500, and no error repeats it.

One regression test (or a parametrized family) per finding of the hardening review: a non-ASCII Slack
signature, NUL characters in inbound messages and platform pushes, `sent_at` beyond datetime's range,
deeply nested platform bodies, and rejected ids, paths and keys echoed back in error messages. Webhook
platforms run against the real HTTP stand-ins of tests/support/platforms.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.compose import build_runtime
from chatbox.domain.errors import InvalidInputError
from chatbox.domain.settings import Settings
from chatbox.domain.untrusted import PLATFORM_JSON_DEPTH, load_platform_json, nesting_exceeds
from chatbox.runtime import Runtime
from chatbox.store.models import Message
from connectors import builtin_platforms
from connectors.slack.spec import SlackSettings
from connectors.telegram.spec import TelegramSettings
from tests.conftest import AccountKey
from tests.support.api import assert_error, create_connection, create_mailbox
from tests.support.payloads import load_payload
from tests.support.platforms import (
    TELEGRAM_BOT,
    SlackWebApi,
    TelegramBotApi,
    running_slack,
    running_telegram,
    slack_signature_headers,
)

Json = dict[str, Any]
TELEGRAM_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SLACK_TOKEN = "xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx"
SLACK_SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
MARKER = "do-not-echo-6e1f"
DEEP_ARRAY = b"[" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000


@pytest.fixture
def telegram_api() -> Iterator[TelegramBotApi]:
    with running_telegram({TELEGRAM_TOKEN: TELEGRAM_BOT}) as api:
        yield api


@pytest.fixture
def slack_api() -> Iterator[SlackWebApi]:
    with running_slack(SLACK_TOKEN) as api:
        yield api


@pytest.fixture
def runtime(settings: Settings, telegram_api: TelegramBotApi, slack_api: SlackWebApi) -> Iterator[Runtime]:
    built = build_runtime(
        settings,
        platforms=builtin_platforms(),
        platform_settings={
            "telegram": TelegramSettings(api_url=telegram_api.root),
            "slack": SlackSettings(api_url=slack_api.root + "/api/"),
        },
    )
    try:
        yield built
    finally:
        built.close()


def connect(client: TestClient, account: AccountKey, platform: str, secrets: dict[str, str]) -> Json:
    mailbox = create_mailbox(client, account)
    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json={"platform": platform, "secrets": secrets},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


@pytest.fixture
def telegram(client: TestClient, account: AccountKey) -> Json:
    return connect(client, account, "telegram", {"bot_token": TELEGRAM_TOKEN})


@pytest.fixture
def slack(client: TestClient, account: AccountKey) -> Json:
    return connect(client, account, "slack", {"bot_token": SLACK_TOKEN, "signing_secret": SLACK_SIGNING})


@pytest.fixture
def signal(client: TestClient, account: AccountKey) -> Json:
    return create_connection(client, account, create_mailbox(client, account)["id"], platform="signal")


def post_telegram(client: TestClient, connection: Json, telegram_api: TelegramBotApi, body: bytes) -> Any:
    secret = str(telegram_api.webhooks[TELEGRAM_TOKEN]["secret_token"])
    headers = {"content-type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret}
    return client.post(f"/v1/ingest/telegram/{connection['id']}", content=body, headers=headers)


def post_slack(client: TestClient, connection: Json, body: bytes, headers: dict[str, Any] | None = None) -> Any:
    return client.post(
        f"/v1/ingest/slack/{connection['id']}",
        content=body,
        headers=headers or slack_signature_headers(SLACK_SIGNING, body),
    )


def post_inbound(client: TestClient, connection: Json, body: Json) -> Any:
    return client.post(
        f"/v1/connections/{connection['id']}/messages",
        json=body,
        headers={"Authorization": f"Bearer {connection['inbound_token']}"},
    )


def stored(runtime: Runtime, connection_id: str) -> list[Message]:
    with runtime.db.session() as db:
        return list(db.scalars(select(Message).where(Message.connection_id == connection_id)))


# --- a non-ASCII X-Slack-Signature ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "timestamp"),
    [
        (("v0=" + "é" * 64).encode(), None),
        (b"v0=" + b"\xff" * 64, None),
        ("v0=é".encode(), None),
        (None, b"9" * 400),
        (None, "١٧٦٤١٧٠٤١٨".encode()),  # Arabic-Indic digits: int() takes them, Slack never sends them
        (None, b"-1"),
    ],
    ids=["non-ascii-hex", "latin-1-bytes", "short-non-ascii", "huge-timestamp", "non-ascii-digits", "negative"],
)
def test_a_slack_signature_or_timestamp_that_is_not_ascii_hex_is_403_not_a_crash(
    client: TestClient, runtime: Runtime, slack: Json, signature: bytes | None, timestamp: bytes | None
) -> None:
    body = json.dumps(load_payload("slack", "channel_message")).encode()
    headers: dict[str, Any] = slack_signature_headers(SLACK_SIGNING, body)
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = timestamp

    response = post_slack(client, slack, body, headers)

    assert_error(response, 403, "forbidden")
    assert stored(runtime, slack["id"]) == []


def test_a_slack_push_signed_properly_still_passes_the_stricter_header_check(
    client: TestClient, runtime: Runtime, slack: Json
) -> None:
    response = post_slack(client, slack, json.dumps(load_payload("slack", "channel_message")).encode())

    assert response.status_code == 200, response.text
    assert len(stored(runtime, slack["id"])) == 1


# --- NUL characters -------------------------------------------------------------------------------

VALID_INBOUND: Json = {"external_chat_id": "c-1", "external_message_id": "m-1", "text": "hi"}


@pytest.mark.parametrize(
    "body",
    [
        {**VALID_INBOUND, "text": "a\x00b"},
        {**VALID_INBOUND, "external_chat_id": "c\x001"},
        {**VALID_INBOUND, "external_message_id": "m\x001"},
        {**VALID_INBOUND, "sender_name": "Ada\x00"},
        {**VALID_INBOUND, "sender_id": "\x00"},
        {**VALID_INBOUND, "chat_name": "ops\x00"},
        {**VALID_INBOUND, "reply_to_external_id": "m-0\x00"},
        {**VALID_INBOUND, "attachments": [{"kind": "file", "file_id": "f-1", "name": "a\x00.txt"}]},
        {**VALID_INBOUND, "attachments": [{"kind": "file", "file_id": "f\x00"}]},
        {**VALID_INBOUND, "attachments": [{"kind": "file", "url": "https://x.test/\x00", "mime_type": "a/b"}]},
    ],
    ids=[
        "text",
        "chat-id",
        "message-id",
        "sender-name",
        "sender-id",
        "chat-name",
        "reply-to",
        "attachment-name",
        "attachment-file-id",
        "attachment-url",
    ],
)
def test_a_nul_character_in_a_posted_message_is_422_on_both_databases(
    client: TestClient, runtime: Runtime, signal: Json, body: Json
) -> None:
    response = post_inbound(client, signal, body)

    error = assert_error(response, 422, "invalid_request")
    assert "NUL" in error["message"]
    assert stored(runtime, signal["id"]) == []


def test_nul_characters_in_a_telegram_update_are_removed_and_the_message_kept(
    client: TestClient, runtime: Runtime, telegram: Json, telegram_api: TelegramBotApi
) -> None:
    update = load_payload("telegram", "document")
    message = update["message"]
    message["caption"] = "the\x00 log"
    message["from"]["first_name"] = "A\x00da"
    message["document"]["file_name"] = "build\x00.log"

    response = post_telegram(client, telegram, telegram_api, json.dumps(update).encode())

    assert response.status_code == 200, response.text
    [kept] = stored(runtime, telegram["id"])
    assert (kept.text, kept.sender_name) == ("the log", "Ada")
    assert kept.attachments[0]["name"] == "build.log"


def test_nul_characters_in_a_slack_event_are_removed_and_the_message_kept(
    client: TestClient, runtime: Runtime, slack: Json
) -> None:
    envelope = load_payload("slack", "file_share")
    envelope["event"]["text"] = "screenshot\x00 of the failure"
    envelope["event"]["files"][0]["name"] = "fail\x00ure.png"

    response = post_slack(client, slack, json.dumps(envelope).encode())

    assert response.status_code == 200, response.text
    [kept] = stored(runtime, slack["id"])
    assert kept.text == "screenshot of the failure"
    assert kept.attachments[0]["name"] == "failure.png"


# --- sent_at beyond datetime's range --------------------------------------------------------------


@pytest.mark.parametrize(
    "sent_at",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-06-01T00:00:00Z", "1969-12-31T23:59:59Z"],
)
def test_a_sent_at_outside_1970_to_9998_is_422_not_an_overflow(
    client: TestClient, runtime: Runtime, signal: Json, sent_at: str
) -> None:
    response = post_inbound(client, signal, {**VALID_INBOUND, "sent_at": sent_at})

    error = assert_error(response, 422, "invalid_request")
    assert "sent_at" in error["message"]
    assert stored(runtime, signal["id"]) == []


@pytest.mark.parametrize("sent_at", ["1970-01-01T00:00:00Z", "9998-12-31T23:59:59+00:00", "1970-01-01T05:00:00+05:00"])
def test_a_sent_at_at_the_edges_of_the_range_is_stored_and_read_back(
    client: TestClient, runtime: Runtime, signal: Json, sent_at: str
) -> None:
    response = post_inbound(client, signal, {**VALID_INBOUND, "sent_at": sent_at})

    assert response.status_code == 202, response.text
    [kept] = stored(runtime, signal["id"])
    assert kept.sent_at is not None and kept.sent_at.isoformat().startswith(sent_at[:4])


def test_a_telegram_update_dated_beyond_the_clock_is_400_not_a_crash(
    client: TestClient, runtime: Runtime, telegram: Json, telegram_api: TelegramBotApi
) -> None:
    update = load_payload("telegram", "private_text")
    update["message"]["date"] = 10**20

    response = post_telegram(client, telegram, telegram_api, json.dumps(update).encode())

    assert_error(response, 400, "bad_request")
    assert stored(runtime, telegram["id"]) == []


def test_a_slack_message_with_an_infinite_ts_is_acked_and_dropped(
    client: TestClient, runtime: Runtime, slack: Json
) -> None:
    envelope = load_payload("slack", "channel_message")
    envelope["event"]["ts"] = "1e400"

    response = post_slack(client, slack, json.dumps(envelope).encode())

    assert response.status_code == 200, response.text
    assert stored(runtime, slack["id"]) == []


# --- deeply nested platform bodies ----------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A JSON object `depth` objects deep."""
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    "body", [DEEP_ARRAY, DEEP_OBJECT, nested(PLATFORM_JSON_DEPTH + 1)], ids=["array", "object", "65"]
)
def test_a_deeply_nested_telegram_body_is_400_not_a_recursion_error(
    client: TestClient, runtime: Runtime, telegram: Json, telegram_api: TelegramBotApi, body: bytes
) -> None:
    response = post_telegram(client, telegram, telegram_api, body)

    error = assert_error(response, 400, "bad_request")
    assert "deeper than" in error["message"]


@pytest.mark.parametrize(
    "body", [DEEP_ARRAY, DEEP_OBJECT, nested(PLATFORM_JSON_DEPTH + 1)], ids=["array", "object", "65"]
)
def test_a_deeply_nested_signed_slack_body_is_400_not_a_recursion_error(
    client: TestClient, runtime: Runtime, slack: Json, body: bytes
) -> None:
    response = post_slack(client, slack, body)

    error = assert_error(response, 400, "bad_request")
    assert "deeper than" in error["message"]


def test_nesting_is_measured_outside_strings_only() -> None:
    brackets_in_strings = json.dumps({"text": "[" * 500 + '\\"{' * 500, "list": [[["ok"]]]})

    assert not nesting_exceeds(brackets_in_strings, 4)
    assert nesting_exceeds(json.dumps({"list": [[["ok"]]]}), 3)
    assert not nesting_exceeds(json.dumps({"list": [[["ok"]]]}), 4)
    assert nesting_exceeds("[" * 100_000, PLATFORM_JSON_DEPTH)  # unclosed, as json.loads would recurse into it


@pytest.mark.parametrize(
    "body",
    [b'{"a": NaN}', b"\xff\xfe{}", b'{"a": 1', "[1]".encode("utf-16")],
    ids=["nan", "not-utf8", "truncated", "utf16"],
)
def test_a_platform_body_that_is_not_utf8_json_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidInputError):
        load_platform_json(body)


def test_a_platform_body_at_the_depth_limit_parses_with_its_nuls_removed() -> None:
    body = json.dumps({"k\x00": [["a\x00b"]]}).encode()

    assert load_platform_json(body, max_depth=3) == {"k": [["ab"]]}


# --- rejected input is not repeated in error messages ---------------------------------------------

HOSTILE_IDS = [f"mbx_{MARKER}", f"%00{MARKER}", MARKER * 300, f"{MARKER}%0d%0aInjected: 1", f"<script>{MARKER}"]


@pytest.mark.parametrize("bad_id", HOSTILE_IDS, ids=["prefixed", "nul", "long", "crlf", "markup"])
def test_ids_from_the_path_are_not_repeated_in_errors(client: TestClient, account: AccountKey, bad_id: str) -> None:
    routes = [
        ("GET", f"/v1/mailboxes/{bad_id}", None),
        ("PUT", f"/v1/mailboxes/{bad_id}", {"name": "x"}),
        ("POST", f"/v1/mailboxes/{bad_id}/connections", {"platform": "signal"}),
        ("GET", f"/v1/connections/{bad_id}", None),
        ("GET", f"/v1/credentials/{bad_id}", None),
        ("DELETE", f"/v1/credentials/{bad_id}", None),
        ("POST", f"/v1/ingest/telegram/{bad_id}", None),
        ("POST", f"/v1/ingest/{bad_id}/conn_01JD3ZZZZZZZZZZZZZZZZZZZZZ", None),
        ("POST", f"/v1/connections/{bad_id}/messages", VALID_INBOUND),
    ]
    for method, path, body in routes:
        headers = {**account.headers, "X-Telegram-Bot-Api-Secret-Token": "x"}
        response = client.request(method, path, json=body, headers=headers)

        assert 400 <= response.status_code < 500, (method, path, response.status_code)
        assert MARKER not in response.text, (method, path, response.text)


def test_unknown_credential_references_are_not_repeated_in_errors(client: TestClient, account: AccountKey) -> None:
    response = client.post(
        "/v1/mailboxes", json={"name": "a", "signing_credential_id": f"cred_{MARKER}"}, headers=account.headers
    )

    error = assert_error(response, 422, "invalid_input")
    assert MARKER not in response.text and "signing_credential_id" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a", f"{MARKER}": 1},
        {"name": "a", "templates": {f"{MARKER}\x00": "x"}},
        {"name": "a", "templates": {MARKER * 400: "x"}},
    ],
    ids=["unknown-field", "template-name-nul", "template-name-long"],
)
def test_keys_that_are_not_names_are_not_repeated_in_validation_errors(
    client: TestClient, account: AccountKey, body: Json
) -> None:
    response = client.post("/v1/mailboxes", json=body, headers=account.headers)

    error = assert_error(response, 422, "invalid_request")
    assert MARKER not in response.text
    assert error["errors"] and all(problem["loc"][0] == "body" for problem in error["errors"])


def test_a_key_that_looks_like_a_name_is_named_in_the_validation_error(client: TestClient, account: AccountKey) -> None:
    response = client.post("/v1/mailboxes", json={"name": "a", "colour": "red"}, headers=account.headers)

    error = assert_error(response, 422, "invalid_request")
    assert ["body", "colour"] in [problem["loc"] for problem in error["errors"]]


def test_an_unknown_platform_is_not_repeated(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)

    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections", json={"platform": "icqzzz"}, headers=account.headers
    )

    error = assert_error(response, 422, "invalid_input")
    assert "icqzzz" not in response.text and "telegram" in error["message"]


def test_a_slack_push_for_an_unknown_connection_names_no_id(client: TestClient, slack: Json) -> None:
    body = json.dumps(load_payload("slack", "channel_message")).encode()
    unknown = "conn_01JD3ZZZZZZZZZZZZZZZZZZZZZ"

    response = client.post(f"/v1/ingest/slack/{unknown}", content=body, headers=slack_signature_headers("x", body))

    assert_error(response, 401, "unauthorized")
    assert unknown not in response.text


def test_stale_slack_timestamps_are_still_refused(client: TestClient, runtime: Runtime, slack: Json) -> None:
    body = json.dumps(load_payload("slack", "channel_message")).encode()

    response = post_slack(client, slack, body, slack_signature_headers(SLACK_SIGNING, body, int(time.time()) - 600))

    assert_error(response, 403, "forbidden")
