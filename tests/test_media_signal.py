"""Media both ways on Signal: the real Signal program (a subprocess) between the signal-cli stand-in and chatbox
served by uvicorn. An inbound photo is read from signal-cli's attachment store through the program's
`GET /v1/attachments/{id}`, via chatbox's url and `read_attachment`; `send_file` reaches signal-cli as a `send`
whose attachment is a data URI, via the program's `POST /v1/files`."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.store.models import Message
from connectors import builtin_platforms
from tests.conftest import AccountKey
from tests.support.api import create_credential, create_mailbox
from tests.support.cli import wait_for
from tests.support.images import PNG_1X1
from tests.support.mcp import mcp_client, run_async, serving, text_of
from tests.support.payloads import load_payload
from tests.support.ports import reserved_port
from tests.support.signal_cli import decode_data_uri, running_signal_cli
from tests.support.signal_program import ACCOUNT, ADA, OUTBOUND_AUTH, running_program

Json = dict[str, Any]
PHOTO_ID = "gK4bW2p1Qm9x0Zr7YtVn.jpg"  # tests/payloads/signal/attachment_photo.json
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\x00" * 64 + b"\xff\xd9"
WAIT_SECONDS = 30


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", db_url=db_url, vault_key=generate_key(), allow_loopback_webhooks=True)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    built = build_runtime(settings, platforms=builtin_platforms())
    try:
        yield built
    finally:
        built.close()


def inbound_messages(runtime: Runtime) -> list[Message]:
    with runtime.db.session() as db:
        return list(db.scalars(select(Message).where(Message.direction == "in")))


def test_a_signal_photo_is_read_through_the_program_and_send_file_reaches_signal_cli_as_a_data_uri(
    client: TestClient, account: AccountKey, runtime: Runtime, tmp_path: Path
) -> None:
    store = tmp_path / "signal-attachments"
    store.mkdir()
    (store / PHOTO_ID).write_bytes(JPEG)
    outbound = create_credential(client, account, kind="mcp_proxy_auth", name="out", value=OUTBOUND_AUTH)
    mailbox = create_mailbox(client, account)
    with (
        running_signal_cli(ACCOUNT) as signal_cli,
        reserved_port() as connector_port,
        serving(create_app(runtime)) as base_url,
    ):
        response = client.post(
            f"/v1/mailboxes/{mailbox['id']}/connections",
            json={
                "platform": "signal",
                "config": {
                    "outbound_url": f"http://127.0.0.1:{connector_port}/v1/send",
                    "outbound_credential_id": outbound["id"],
                },
            },
            headers=account.headers,
        )
        assert response.status_code == 201, response.text
        connection = response.json()
        with running_program(
            tmp_path,
            port=connector_port,
            CHATBOX_API_URL=base_url,
            CHATBOX_CONNECTION_ID=connection["id"],
            CHATBOX_INBOUND_TOKEN=connection["inbound_token"],
            SIGNAL_CLI_URL=signal_cli.url,
            SIGNAL_ATTACHMENTS_DIR=str(store),
        ):
            wait_for(lambda: bool(signal_cli.event_stream_requests) or None, timeout=WAIT_SECONDS, what="events")
            signal_cli.push(load_payload("signal", "attachment_photo"))
            wait_for(lambda: bool(inbound_messages(runtime)) or None, timeout=WAIT_SECONDS, what="the photo")

            async def agent() -> list[types.CallToolResult]:
                async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                    page = await session.call_tool("read_chat", {"chat_id": f"signal:{ADA}"})
                    assert page.structured_content is not None, text_of(page)
                    [attachment] = page.structured_content["messages"][0]["attachments"]
                    return [
                        page,
                        await session.call_tool("read_attachment", {"attachment_id": attachment["id"]}),
                        await session.call_tool(
                            "send_file",
                            {
                                "chat_id": f"signal:{ADA}",
                                "filename": "chart.png",
                                "data_base64": base64.b64encode(PNG_1X1).decode(),
                                "caption": "the chart",
                            },
                        ),
                    ]

            page, read, sent = run_async(agent)
            assert page.structured_content is not None
            [attachment] = page.structured_content["messages"][0]["attachments"]
            fetched = client.get(
                f"/v1/attachments/{attachment['id']}", headers={"Authorization": f"Bearer {mailbox['mcp_token']}"}
            )

    assert attachment["kind"] == "image" and attachment["mime_type"] == "image/jpeg" and attachment["size"] == 183204
    assert fetched.status_code == 200 and fetched.content == JPEG
    assert not read.is_error, text_of(read)
    [image] = [block for block in read.content if isinstance(block, types.ImageContent)]
    assert image.mime_type == "image/jpeg" and base64.b64decode(image.data) == JPEG
    assert not sent.is_error, text_of(sent)
    [send] = signal_cli.sends
    assert send["recipient"] == [ADA] and send["message"] == "the chart"
    assert decode_data_uri(send["attachments"][0]) == ("image/png", "chart.png", PNG_1X1)
    assert sent.structured_content is not None
    assert sent.structured_content["external_id"].startswith(f"{ACCOUNT}:")
