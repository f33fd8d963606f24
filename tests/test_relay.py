"""The container-program toolkit (`connectors/relay`): settings, spool, inbox, the send server, log redaction.

The inbox posts to a real HTTP server on 127.0.0.1 that answers as chatbox's inbound route would; the
send server is driven over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.relay import Inbox, PlatformDown, RateLimited, RelaySettings, SendRefused, SendRequest, Spool, load
from connectors.relay.program import JsonLineFormatter
from connectors.relay.server import SendServer
from connectors.relay.settings import read_settings

TOKEN = "inbound-token-0123456789abcdef"
OUTBOUND = "outbound-auth-0123456789abcdef"


def env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    values = {
        "CHATBOX_API_URL": "http://127.0.0.1:9",
        "CHATBOX_CONNECTION_ID": "conn_01JD3AAAAAAAAAAAAAAAAAAAAA",
        "CHATBOX_INBOUND_TOKEN": TOKEN,
        "CHATBOX_OUTBOUND_AUTH": OUTBOUND,
        "CONNECTOR_STATE_DIR": str(tmp_path),
        "CONNECTOR_RETRY_MAX_SECONDS": "0.05",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v != "<unset>"}


def message(n: int, text: str = "hi") -> dict[str, Any]:
    return {"external_chat_id": "+4915112345678", "external_message_id": f"m{n}", "text": text}


# --- settings ---------------------------------------------------------------------------------------------


def test_settings_read_every_variable_with_defaults(tmp_path: Path) -> None:
    settings = read_settings(RelaySettings, env(tmp_path, CHATBOX_API_URL="https://chatbox.example.com/"))
    assert settings.chatbox_api_url == "https://chatbox.example.com"
    assert (settings.connector_host, settings.connector_port) == ("0.0.0.0", 8080)
    assert sorted(settings.secret_values()) == sorted([TOKEN, OUTBOUND])


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("CHATBOX_INBOUND_TOKEN", "<unset>", "CHATBOX_INBOUND_TOKEN is not set"),
        ("CHATBOX_API_URL", "ftp://x", "CHATBOX_API_URL is malformed"),
        ("CONNECTOR_PORT", "eighty", "CONNECTOR_PORT is malformed"),
        ("CONNECTOR_STATE_DIR", "/nonexistent/spool", "CONNECTOR_STATE_DIR is malformed"),
    ],
    ids=["missing-token", "bad-url", "bad-port", "missing-dir"],
)
def test_a_missing_or_malformed_variable_exits_2_with_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], variable: str, value: str, said: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        load(RelaySettings, env(tmp_path, **{variable: value}))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err
    assert TOKEN not in err


# --- spool ------------------------------------------------------------------------------------------------


def test_spool_keeps_messages_in_order_once_each_and_across_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.put(message(1)) is True
    assert spool.put(message(2), state={"cursor": "7"}) is True
    assert spool.put(message(1, "again")) is False
    spool.close()

    reopened = Spool(tmp_path)
    assert [m.key for m in reopened.pending(10)] == ["m1", "m2"]
    assert reopened.pending(10)[0].message["text"] == "hi"
    assert reopened.get_state("cursor") == "7"
    reopened.done("m1")
    assert reopened.count() == 1
    reopened.set_state("cursor", "8")
    assert reopened.get_state("cursor") == "8" and reopened.get_state("other") is None
    reopened.close()


def test_spool_refuses_a_message_without_an_id(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(ValueError, match="external_message_id"):
        spool.put({"text": "no id"})
    spool.close()


# --- inbox ------------------------------------------------------------------------------------------------


class FakeChatboxInbound:
    """chatbox's inbound route on 127.0.0.1: records each POST, answers the scripted statuses, then 202."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.posts: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((request.headers.get("Authorization", ""), await request.json()))
        status = self.statuses.pop(0) if self.statuses else 202
        return web.json_response({"message_id": "msg_x", "chat_id": "signal:x", "duplicate": False}, status=status)


async def with_chatbox(statuses: list[int], body: Callable[[FakeChatboxInbound, str], Awaitable[None]]) -> None:
    fake = FakeChatboxInbound(statuses)
    app = web.Application()
    app.router.add_post("/v1/connections/{connection_id}/messages", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        await body(fake, f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def test_inbox_delivers_in_order_retries_failures_and_drops_only_invalid_messages(tmp_path: Path) -> None:
    async def scenario(fake: FakeChatboxInbound, url: str) -> None:
        settings = read_settings(RelaySettings, env(tmp_path, CHATBOX_API_URL=url))
        inbox = Inbox(settings, Spool(tmp_path))
        inbox.start()
        for n in range(1, 4):
            await inbox.submit(message(n, text=f"t{n}\x00"))
        await until(lambda: inbox.spool.count() == 0)
        await inbox.close()
        # m1: 503 then 202; m2: 422 dropped; m3: 401 (kept) then 202.
        assert [body["external_message_id"] for _, body in fake.posts] == ["m1", "m1", "m2", "m3", "m3"]
        assert {auth for auth, _ in fake.posts} == {f"Bearer {TOKEN}"}
        assert fake.posts[0][1]["text"] == "t1"  # NUL removed before spooling
        assert fake.posts[-1][1]["external_message_id"] == "m3"

    asyncio.run(with_chatbox([503, 202, 422, 401], scenario))


def test_inbox_keeps_everything_while_chatbox_is_unreachable_and_drains_after(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = read_settings(RelaySettings, env(tmp_path, CHATBOX_API_URL="http://127.0.0.1:9"))
        inbox = Inbox(settings, Spool(tmp_path))
        inbox.start()
        await inbox.submit(message(1))
        await inbox.submit(message(2))
        await until(lambda: inbox.last_error is not None)
        await inbox.close()
        assert inbox.spool.count() == 2

        async def drain(fake: FakeChatboxInbound, url: str) -> None:
            restarted = Inbox(read_settings(RelaySettings, env(tmp_path, CHATBOX_API_URL=url)), Spool(tmp_path))
            restarted.start()
            await until(lambda: restarted.spool.count() == 0)
            await restarted.close()
            assert [body["external_message_id"] for _, body in fake.posts] == ["m1", "m2"]

        await with_chatbox([], drain)

    asyncio.run(scenario())


# --- the send server --------------------------------------------------------------------------------------

SEND_BODY: dict[str, Any] = {
    "request_id": "6f1c0d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
    "connection_id": "conn_01JD3AAAAAAAAAAAAAAAAAAAAA",
    "platform": "signal",
    "chat_id": "+4915112345678",
    "text": "On my way.",
    "reply_to": None,
    "options": {},
    "future_field": 1,
}


async def send_handler(request: SendRequest) -> str:
    if request.text == "refuse":
        raise SendRefused(404, "unknown_chat", "no such chat")
    if request.text == "slow down":
        raise RateLimited(2.5)
    if request.text == "down":
        raise PlatformDown("signal-cli is not answering")
    if request.text == "crash":
        raise RuntimeError("bug")
    return "1764170419456"


async def healthy() -> tuple[bool, dict[str, Any]]:
    return True, {"ok": 1}


def call_server(requests: list[tuple[dict[str, str], bytes]]) -> list[tuple[int, dict[str, Any], str | None]]:
    async def scenario() -> list[tuple[int, dict[str, Any], str | None]]:
        runner = web.AppRunner(SendServer(OUTBOUND, send_handler, healthy).app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/send"
        answers = []
        try:
            async with aiohttp.ClientSession() as session:
                for headers, body in requests:
                    async with session.post(url, data=body, headers=headers) as response:
                        answers.append((response.status, await response.json(), response.headers.get("Retry-After")))
        finally:
            await runner.cleanup()
        return answers

    return asyncio.run(scenario())


GOOD = {"Authorization": f"Bearer {OUTBOUND}", "Content-Type": "application/json"}


def with_text(text: str) -> bytes:
    return json.dumps({**SEND_BODY, "text": text}).encode()


def test_send_answers_the_message_id_and_maps_each_error_to_the_contract() -> None:
    answers = call_server(
        [
            (GOOD, with_text("hello")),
            (GOOD, with_text("refuse").replace(b"6f1c", b"0001")),
            (GOOD, with_text("slow down").replace(b"6f1c", b"0002")),
            (GOOD, with_text("down").replace(b"6f1c", b"0003")),
            (GOOD, with_text("crash").replace(b"6f1c", b"0004")),
        ]
    )
    assert answers[0][:2] == (200, {"message_id": "1764170419456", "part_ids": ["1764170419456"]})
    assert answers[1][:2] == (404, {"code": "unknown_chat", "message": "no such chat"})
    assert answers[2][0] == 429 and answers[2][1]["retry_after"] == 2.5 and answers[2][2] == "3"
    assert answers[3][0] == 503 and answers[3][1]["code"] == "platform_unavailable"
    assert answers[4][0] == 502 and answers[4][1]["code"] == "connector_error" and "bug" not in answers[4][1]["message"]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, with_text("x"), 401),
        ({"Authorization": "Bearer wrong"}, with_text("x"), 401),
        ({"Authorization": f"Bearer {OUTBOUND}x"}, with_text("x"), 401),
        ({"Authorization": "Bearer \udcff"}, with_text("x"), 401),
        (GOOD, b"not json", 400),
        (GOOD, b"[" * 100_000, 400),
        (GOOD, b'{"text": "no ids"}', 422),
        (GOOD, json.dumps({**SEND_BODY, "chat_id": ""}).encode(), 422),
        (GOOD, b"\xff\xfe", 400),
        (GOOD, b"[]", 422),
    ],
    ids=["no-bearer", "wrong", "longer", "non-ascii", "junk", "deep", "missing", "empty-chat", "not-utf8", "list"],
)
def test_send_refuses_bad_bearers_and_bodies(headers: dict[str, str], body: bytes, status: int) -> None:
    headers = {k: v.encode("utf-8", "surrogateescape").decode("latin-1") for k, v in headers.items()}
    [(answered, error, _)] = call_server([(headers, body)])
    assert answered == status
    assert set(error) == {"code", "message"}


# --- logging ----------------------------------------------------------------------------------------------


def test_log_lines_are_json_and_never_hold_a_secret() -> None:
    formatter = JsonLineFormatter([TOKEN, OUTBOUND])
    try:
        raise ValueError(f"token {TOKEN} leaked")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, "f", 1, "posting with %s", (OUTBOUND,), sys.exc_info())
    record.header = f"Bearer {TOKEN}"
    line = formatter.format(record)
    parsed = json.loads(line)
    assert parsed["level"] == "error" and parsed["header"] == "Bearer [redacted]"
    assert TOKEN not in line and OUTBOUND not in line


def test_inbox_keeps_a_message_through_rate_limits_and_an_archived_mailbox(tmp_path: Path) -> None:
    async def scenario(fake: FakeChatboxInbound, url: str) -> None:
        inbox = Inbox(read_settings(RelaySettings, env(tmp_path, CHATBOX_API_URL=url)), Spool(tmp_path))
        inbox.start()
        await inbox.submit(message(1))
        await until(lambda: inbox.spool.count() == 0)
        await inbox.close()
        assert [body["external_message_id"] for _, body in fake.posts] == ["m1", "m1", "m1", "m1"]
        assert inbox.delivered == 1 and inbox.last_error is None

    asyncio.run(with_chatbox([429, 409, 500], scenario))
