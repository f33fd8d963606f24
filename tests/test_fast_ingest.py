"""The fast lane (`chatbox.web.fast_ingest`) answers the two hot routes exactly as the FastAPI routes do.

Each request goes over real HTTP to two uvicorn servers of one runtime: the app as every root composes it (the
lane in front) and the same app with `fast_lane=False` (the FastAPI routes alone). Status, headers and body must
be the same, byte for byte; what differs by nature (a new message's id, `date`) is compared apart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.store.models import Message
from chatbox.web.fast_ingest import FastIngest
from connectors import builtin_platforms
from connectors.telegram.spec import TelegramSettings
from tests.conftest import AccountKey
from tests.support.api import assert_error, create_connection, create_mailbox
from tests.support.mcp import serving
from tests.support.payloads import payload_bytes
from tests.support.platforms import TELEGRAM_BOT, TelegramBotApi, running_telegram

Json = dict[str, Any]
TELEGRAM_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
VALID = {"external_chat_id": "c-1", "external_message_id": "m-1", "text": "hi"}
MIB = 1_048_576

# The lane's own answers do not depend on the database: one backend is enough here (the routes' own tests run both).
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def telegram_api() -> Iterator[TelegramBotApi]:
    with running_telegram({TELEGRAM_TOKEN: TELEGRAM_BOT}) as api:
        yield api


def compose(settings: Settings, telegram_api: TelegramBotApi) -> Runtime:
    return build_runtime(
        settings,
        platforms=builtin_platforms(),
        platform_settings={"telegram": TelegramSettings(api_url=telegram_api.root)},
    )


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # Each wrong credential below is tried twice (once per server): throttling is tested on its own runtime.
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        auth_failures_per_client=1000,
        auth_failures_per_credential=1000,
    )


@pytest.fixture
def runtime(settings: Settings, telegram_api: TelegramBotApi) -> Iterator[Runtime]:
    built = compose(settings, telegram_api)
    try:
        yield built
    finally:
        built.close()


@dataclass(frozen=True)
class Servers:
    lane: httpx.Client
    reference: httpx.Client

    def both(self, method: str, path: str, **request: Any) -> tuple[httpx.Response, httpx.Response]:
        return self.lane.request(method, path, **request), self.reference.request(method, path, **request)


def _client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=10.0, follow_redirects=False)


@pytest.fixture
def servers(runtime: Runtime) -> Iterator[Servers]:
    with (
        serving(create_app(runtime)) as lane_url,
        serving(create_app(runtime, fast_lane=False)) as reference_url,
        _client(lane_url) as lane,
        _client(reference_url) as reference,
    ):
        yield Servers(lane, reference)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


@pytest.fixture
def signal(client: TestClient, account: AccountKey) -> Json:
    mailbox = create_mailbox(client, account, webhook_url="https://agent.example.test/hook")
    return create_connection(client, account, mailbox["id"], platform="signal")


@pytest.fixture
def telegram(client: TestClient, account: AccountKey, telegram_api: TelegramBotApi) -> tuple[Json, str]:
    mailbox = create_mailbox(client, account)
    connection = create_connection(client, account, mailbox["id"], platform="telegram")
    return connection, str(telegram_api.webhooks[TELEGRAM_TOKEN]["secret_token"])


def assert_same(lane: httpx.Response, reference: httpx.Response) -> None:
    assert (lane.status_code, lane.content) == (reference.status_code, reference.content)
    assert _headers(lane) == _headers(reference)


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    """The headers but `date`, a redirect's location without the server's own address (each has its port)."""
    return [
        (name, httpx.URL(value).raw_path.decode() if name == "location" else value)
        for name, value in response.headers.multi_items()
        if name != "date"
    ]


def inbound_path(connection: Json) -> str:
    return f"/v1/connections/{connection['id']}/messages"


def bearer(connection: Json) -> dict[str, str]:
    return {"Authorization": f"Bearer {connection['inbound_token']}"}


def stored(runtime: Runtime) -> list[Message]:
    with runtime.db.session() as db:
        return list(db.scalars(select(Message)))


def test_every_root_composes_the_lane_in_front_of_fastapi(client: TestClient, signal: Json) -> None:
    client.get("/health")  # the lane is composed on the first request

    assert isinstance(client.app.served, FastIngest)  # type: ignore[attr-defined]


# --- POST /v1/connections/{connection_id}/messages ---------------------------------------------------------


def test_an_accepted_message_and_its_copy_answer_as_the_route_does(
    servers: Servers, runtime: Runtime, signal: Json
) -> None:
    first = servers.lane.post(inbound_path(signal), json=VALID, headers=bearer(signal))
    copy_lane, copy_reference = servers.both("POST", inbound_path(signal), json=VALID, headers=bearer(signal))
    other = servers.reference.post(
        inbound_path(signal), json={**VALID, "external_message_id": "m-2"}, headers=bearer(signal)
    )

    assert first.status_code == 202 and first.json()["duplicate"] is False
    assert_same(copy_lane, copy_reference)
    assert copy_lane.json() == {**first.json(), "duplicate": True}
    assert _headers(first) == [(n, v if n != "content-length" else str(len(first.content))) for n, v in _headers(other)]
    assert len(stored(runtime)) == 2


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer\twrong", "Basic dXNlcjpwYXNz", "Bearer wrong", "bearer inb_" + "x" * 43],
    ids=["none", "empty", "scheme-only", "tab-separated", "basic", "wrong", "unknown-token"],
)
def test_a_missing_or_wrong_token_is_the_same_401_whatever_the_body(
    servers: Servers, runtime: Runtime, signal: Json, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for body in (VALID, {"nonsense": True}):
        lane, reference = servers.both("POST", inbound_path(signal), json=body, headers=headers)

        assert_error(lane, 401, "unauthorized")
        assert lane.headers["www-authenticate"] == "Bearer"
        assert_same(lane, reference)
    assert stored(runtime) == []


def test_an_unknown_connection_is_the_same_401(servers: Servers, signal: Json) -> None:
    path = "/v1/connections/conn_01JD3ZZZZZZZZZZZZZZZZZZZZZ/messages"

    lane, reference = servers.both("POST", path, json=VALID, headers=bearer(signal))

    assert_error(lane, 401)
    assert_same(lane, reference)


def test_a_webhook_platforms_inbound_token_is_the_same_403(servers: Servers, telegram: tuple[Json, str]) -> None:
    connection, _ = telegram

    lane, reference = servers.both("POST", inbound_path(connection), json=VALID, headers=bearer(connection))

    assert_error(lane, 403, "forbidden")
    assert_same(lane, reference)


@pytest.mark.parametrize(
    "body",
    [
        {"external_chat_id": "c-1", "external_message_id": "m-1"},
        {**VALID, "chat_type": "forum"},
        {**VALID, "attachments": [{"kind": "image"}]},
        {**VALID, "sent_at": "yesterday"},
        {**VALID, "text": "x" * 70_000},
        {**VALID, "unexpected": 1, "Ünïcode key": 2},
        [VALID],
        "text",
        None,
        {},
    ],
    ids=[
        "no-content",
        "bad-chat-type",
        "attachment-without-reference",
        "bad-sent-at",
        "text-too-long",
        "unknown-fields",
        "a-list",
        "a-string",
        "null",
        "empty-object",
    ],
)
def test_an_invalid_body_is_the_same_422(servers: Servers, runtime: Runtime, signal: Json, body: Any) -> None:
    lane, reference = servers.both("POST", inbound_path(signal), json=body, headers=bearer(signal))

    assert_error(lane, 422, "invalid_request")
    assert lane.json()["errors"]
    assert_same(lane, reference)
    assert stored(runtime) == []


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[" * 100_000, "application/json"),
        (json.dumps(VALID).encode(), "text/plain"),
        (json.dumps(VALID).encode(), None),
        (json.dumps(VALID).encode(), "application/vnd.chatbox+json"),
        (json.dumps(VALID).encode(), "Application/JSON; charset=utf-8"),
        (b"", "application/json"),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "nested-too-deep",
        "text-plain",
        "no-content-type",
        "json-suffix",
        "json-params",
        "empty",
    ],
)
def test_bodies_fastapi_reads_its_own_way_answer_the_same(
    servers: Servers, signal: Json, content: bytes, content_type: str | None
) -> None:
    headers = bearer(signal) if content_type is None else {**bearer(signal), "content-type": content_type}
    wrong = {"Authorization": "Bearer wrong", **({} if content_type is None else {"content-type": content_type})}

    lane, reference = servers.both("POST", inbound_path(signal), content=content, headers=headers)
    lane_wrong, reference_wrong = servers.both("POST", inbound_path(signal), content=content, headers=wrong)

    assert lane.status_code in (202, 400, 422)
    assert_same(lane, reference) if lane.status_code != 202 else assert_error(lane_wrong, 401)
    assert_same(lane_wrong, reference_wrong)


def test_an_archived_mailbox_is_the_same_409(
    servers: Servers, client: TestClient, account: AccountKey, signal: Json
) -> None:
    client.delete(f"/v1/mailboxes/{signal['mailbox_id']}", headers=account.headers)

    lane, reference = servers.both("POST", inbound_path(signal), json=VALID, headers=bearer(signal))

    assert_error(lane, 409, "conflict")
    assert_same(lane, reference)


# --- both routes: the body limit, other methods and paths ---------------------------------------------------


def _big(size: int) -> Iterator[bytes]:
    chunk = b"x" * 65_536
    for _ in range(size // len(chunk)):
        yield chunk
    yield b"x" * (size % len(chunk))


@pytest.mark.parametrize("route", ["inbound", "ingest"])
def test_a_body_over_1_mib_is_the_same_413_declared_or_streamed(
    servers: Servers, runtime: Runtime, signal: Json, telegram: tuple[Json, str], route: str
) -> None:
    connection, secret = telegram
    path = inbound_path(signal) if route == "inbound" else f"/v1/ingest/telegram/{connection['id']}"
    headers = {**bearer(signal), "X-Telegram-Bot-Api-Secret-Token": secret, "content-type": "application/json"}

    declared = servers.both("POST", path, content=b"x" * (MIB + 1), headers=headers)
    # A generator body goes out chunked: no content-length to refuse it by.
    streamed = (
        servers.lane.post(path, content=_big(MIB + 1), headers=headers),
        servers.reference.post(path, content=_big(MIB + 1), headers=headers),
    )
    at_limit = servers.lane.post(path, content=_big(MIB), headers=headers)

    for lane, reference in (declared, streamed):
        assert_error(lane, 413, "payload_too_large")
        assert_same(lane, reference)
    assert at_limit.status_code in (400, 422)  # read whole, then refused as what it is: not a message
    assert stored(runtime) == []


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("route", ["inbound", "ingest"])
def test_other_methods_are_the_same_405(
    servers: Servers, signal: Json, telegram: tuple[Json, str], method: str, route: str
) -> None:
    path = inbound_path(signal) if route == "inbound" else f"/v1/ingest/telegram/{telegram[0]['id']}"

    lane, reference = servers.both(method, path, headers=bearer(signal))

    assert lane.status_code == 405
    assert_same(lane, reference)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/connections/{id}/messages/",
        "/v1/connections/{id}/messages/extra",
        "/v1/connections//messages",
        "/v1/connections/{id}/message",
        "/v2/connections/{id}/messages",
        "/v1/ingest/telegram/{id}/",
        "/v1/ingest/telegram/{id}/extra",
        "/v1/ingest/telegram/",
        "/v1/ingest//{id}",
        "/v1/ingest/telegram",
        "/v1/connections/{id}%2Fx/messages",
    ],
    ids=[
        "inbound-trailing-slash",
        "inbound-extra-segment",
        "inbound-empty-id",
        "inbound-other-word",
        "inbound-other-version",
        "ingest-trailing-slash",
        "ingest-extra-segment",
        "ingest-no-connection",
        "ingest-empty-platform",
        "ingest-short",
        "encoded-slash",
    ],
)
def test_paths_beside_the_routes_answer_the_same(
    servers: Servers, runtime: Runtime, signal: Json, telegram: tuple[Json, str], path: str
) -> None:
    connection, secret = telegram
    concrete = path.replace("{id}", signal["id"] if "connections" in path else connection["id"])
    headers = {**bearer(signal), "X-Telegram-Bot-Api-Secret-Token": secret}

    lane, reference = servers.both("POST", concrete, json=VALID, headers=headers)

    assert lane.status_code in (307, 401, 404, 405), lane.text
    assert_same(lane, reference)
    assert stored(runtime) == []


# --- POST /v1/ingest/{platform}/{connection_id} ------------------------------------------------------------


def test_a_telegram_update_and_its_retry_answer_as_the_route_does(
    servers: Servers, runtime: Runtime, telegram: tuple[Json, str]
) -> None:
    connection, secret = telegram
    path = f"/v1/ingest/telegram/{connection['id']}"
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret, "content-type": "application/json"}
    body = payload_bytes("telegram", "private_text")

    first = servers.lane.post(path, content=body, headers=headers)
    lane, reference = servers.both("POST", path, content=body, headers=headers)

    assert first.status_code == 200
    assert_same(first, lane)
    assert_same(lane, reference)
    assert len(stored(runtime)) == 1


@pytest.mark.parametrize(
    ("platform", "secret", "body"),
    [
        ("telegram", None, b"{}"),
        ("telegram", "wrong", b"{}"),
        ("telegram", "right", b"{not json"),
        ("telegram", "right", b"\xff\xfe\x00"),
        ("signal", "right", b"{}"),
        ("slack", "right", b"{}"),
        ("nope", "right", b"{}"),
    ],
    ids=["no-secret", "wrong-secret", "junk", "not-utf8", "not-a-webhook-platform", "other-platform", "no-platform"],
)
def test_ingest_errors_are_the_same(
    servers: Servers, runtime: Runtime, telegram: tuple[Json, str], platform: str, secret: str | None, body: bytes
) -> None:
    connection, right = telegram
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": right if secret == "right" else secret}

    lane, reference = servers.both("POST", f"/v1/ingest/{platform}/{connection['id']}", content=body, headers=headers)

    assert 400 <= lane.status_code < 500
    assert_same(lane, reference)
    if lane.status_code == 401:
        assert lane.headers["www-authenticate"] == "Webhook"
    assert stored(runtime) == []


# --- throttling and the server's own failures, each on a runtime of its own ---------------------------------


def test_throttled_clients_get_the_same_429_and_retry_after_on_both_routes(
    settings: Settings, telegram_api: TelegramBotApi, signal: Json, telegram: tuple[Json, str]
) -> None:
    strict = compose(settings.model_copy(update={"auth_failures_per_credential": 2}), telegram_api)
    connection, secret = telegram
    ingest = f"/v1/ingest/telegram/{connection['id']}"
    try:
        with serving(create_app(strict)) as lane_url, serving(create_app(strict, fast_lane=False)) as reference_url:
            with _client(lane_url) as lane, _client(reference_url) as reference:
                for _ in range(2):
                    lane.post(inbound_path(signal), json=VALID, headers={"Authorization": "Bearer wrong"})
                    lane.post(ingest, content=b"{}", headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
                throttled = [
                    (client.post(inbound_path(signal), json=VALID, headers=bearer(signal)), client)
                    for client in (lane, reference)
                ]
                webhook = [
                    client.post(ingest, content=b"{}", headers={"X-Telegram-Bot-Api-Secret-Token": secret})
                    for client in (lane, reference)
                ]
    finally:
        strict.close()

    for response in (throttled[0][0], webhook[0]):
        assert_error(response, 429, "rate_limited")
        assert int(response.headers["retry-after"]) > 0
    # Retry-After counts down, so the two answers may differ by a second: compare all but it.
    for lane_answer, reference_answer in ((throttled[0][0], throttled[1][0]), (webhook[0], webhook[1])):
        assert lane_answer.status_code == reference_answer.status_code
        assert lane_answer.json()["code"] == reference_answer.json()["code"]
        assert [n for n, _ in _headers(lane_answer)] == [n for n, _ in _headers(reference_answer)]


def test_an_unexpected_failure_is_the_same_plain_500_and_is_logged(
    settings: Settings, telegram_api: TelegramBotApi, signal: Json, caplog: pytest.LogCaptureFixture
) -> None:
    broken = compose(settings, telegram_api)
    # A database thread that stopped: the first lookup raises what no handler knows (RuntimeError).
    broken.db.executor.shutdown()
    server_log = logging.getLogger("uvicorn.error")  # uvicorn's loggers do not propagate to the root
    try:
        with serving(create_app(broken)) as lane_url, serving(create_app(broken, fast_lane=False)) as reference_url:
            with _client(lane_url) as lane, _client(reference_url) as reference:
                server_log.addHandler(caplog.handler)
                lane_answer = lane.post(inbound_path(signal), json=VALID, headers=bearer(signal))
                server_log.removeHandler(caplog.handler)
                reference_answer = reference.post(inbound_path(signal), json=VALID, headers=bearer(signal))
    finally:
        server_log.removeHandler(caplog.handler)
        broken.close()

    assert lane_answer.status_code == 500
    assert_same(lane_answer, reference_answer)
    assert any(
        record.exc_info and "cannot schedule new futures" in str(record.exc_info[1]) for record in caplog.records
    )
