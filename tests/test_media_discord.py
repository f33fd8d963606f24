"""Media both ways on Discord: the real Discord program (a subprocess) between the Discord stand-in and chatbox
served by uvicorn. An inbound image is fetched from its CDN URL by chatbox (through its url and
`read_attachment`); `send_file` reaches Discord as a message upload (multipart `payload_json` + `files[0]`) via
the program's `POST /v1/files`, and a file over Discord's limit is refused by the program before Discord."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

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
from tests.support.discord_api import running_discord
from tests.support.discord_program import OUTBOUND_AUTH, running_program
from tests.support.files import running_file_server
from tests.support.images import PNG_1X1
from tests.support.mcp import mcp_client, run_async, serving, text_of
from tests.support.ports import reserved_port

CHANNEL = "1100000000000000020"
WAIT_SECONDS = 30


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # Loopback allowed: the program and the stand-in's CDN both listen on 127.0.0.1 here.
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        allow_loopback_webhooks=True,
        attachment_max_bytes=12 * 1024 * 1024,
    )


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


def test_a_discord_image_is_fetched_from_its_cdn_and_send_file_uploads_through_the_program(
    client: TestClient, account: AccountKey, runtime: Runtime, tmp_path: Path
) -> None:
    outbound = create_credential(client, account, kind="mcp_proxy_auth", name="out", value=OUTBOUND_AUTH)
    mailbox = create_mailbox(client, account)
    with (
        running_file_server() as files,
        running_discord() as discord,
        reserved_port() as connector_port,
        serving(create_app(runtime)) as base_url,
    ):
        response = client.post(
            f"/v1/mailboxes/{mailbox['id']}/connections",
            json={
                "platform": "discord",
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
            discord,
            port=connector_port,
            CHATBOX_API_URL=base_url,
            CHATBOX_CONNECTION_ID=connection["id"],
            CHATBOX_INBOUND_TOKEN=connection["inbound_token"],
        ):
            discord.wait_until(discord.connected, WAIT_SECONDS, "the program's IDENTIFY")
            url = discord.add_cdn_file(CHANNEL, "error.png", PNG_1X1, "image/png")
            posted = discord.message(CHANNEL, "see the error")
            posted["attachments"] = [
                {"id": "1312345678901234701", "filename": "error.png", "size": len(PNG_1X1), "url": url,
                 "proxy_url": url, "content_type": "image/png", "width": 1, "height": 1}
            ]  # fmt: skip
            discord.dispatch("MESSAGE_CREATE", posted)
            wait_for(lambda: bool(inbound_messages(runtime)) or None, timeout=WAIT_SECONDS, what="the image")

            async def agent() -> list[types.CallToolResult]:
                async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                    page = await session.call_tool("read_chat", {"chat_id": f"discord:{CHANNEL}"})
                    assert page.structured_content is not None, text_of(page)
                    [attachment] = page.structured_content["messages"][0]["attachments"]
                    photo = base64.b64encode(PNG_1X1).decode()
                    return [
                        page,
                        await session.call_tool("read_attachment", {"attachment_id": attachment["id"]}),
                        await session.call_tool(
                            "send_file",
                            {
                                "chat_id": f"discord:{CHANNEL}",
                                "filename": "chart.png",
                                "data_base64": photo,
                                "caption": "the chart",
                                "reply_to": posted["id"],
                            },
                        ),
                        await session.call_tool(
                            "send_file",
                            {"chat_id": f"discord:{CHANNEL}", "filename": "big.bin", "url": f"{files.root}/big.bin"},
                        ),
                    ]

            files.files["/big.bin"] = (b"x" * (10 * 1024 * 1024 + 1), "application/octet-stream")
            page, read, sent, too_large = run_async(agent)
            assert page.structured_content is not None
            [attachment] = page.structured_content["messages"][0]["attachments"]
            fetched = client.get(
                f"/v1/attachments/{attachment['id']}", headers={"Authorization": f"Bearer {mailbox['mcp_token']}"}
            )
            uploads = [call for call in discord.sent if call.files]

    assert fetched.status_code == 200 and fetched.content == PNG_1X1
    assert not read.is_error, text_of(read)
    [image] = [block for block in read.content if isinstance(block, types.ImageContent)]
    assert base64.b64decode(image.data) == PNG_1X1
    assert not sent.is_error, text_of(sent)
    [upload] = uploads  # the one over Discord's 10 MiB never reached Discord
    assert too_large.is_error and "[too_large]" in text_of(too_large) and "10485760" in text_of(too_large)
    assert upload.files == [("chart.png", PNG_1X1, "image/png")]
    assert upload.body["content"] == "the chart"
    assert upload.body["attachments"] == [{"id": 0, "filename": "chart.png"}]
    assert upload.body["message_reference"]["message_id"] == posted["id"]
    assert sent.structured_content is not None and sent.structured_content["external_id"].isdigit()
    with runtime.db.session() as db:
        [out] = db.scalars(select(Message).where(Message.direction == "out")).all()
        assert out.attachments[0]["url"].startswith("http://127.0.0.1:")  # the CDN URL Discord answered
