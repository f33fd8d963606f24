"""Media both ways on Slack, against the Web API stand-in (and its file host) on 127.0.0.1: an inbound file
fetched by files.info + url_private_download with the bot token, through chatbox's url and `read_attachment`;
`send_file` as the upload flow v2 (getUploadURLExternal → upload → completeUploadExternal)."""

from __future__ import annotations

import base64
import json
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
from connectors.slack.spec import SlackSettings
from tests.conftest import AccountKey
from tests.support.api import create_mailbox
from tests.support.images import PNG_1X1
from tests.support.mcp import mcp_client, run_async, serving, text_of
from tests.support.payloads import payload_bytes
from tests.support.platforms import SlackWebApi, running_slack, slack_signature_headers

Json = dict[str, Any]
TOKEN = "xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx"
SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
CHAT = "slack:D0ADA"


@pytest.fixture
def slack_api() -> Iterator[SlackWebApi]:
    with running_slack(TOKEN) as api:
        api.add_file("F0SCREEN01", PNG_1X1, "failure.png", "image/png")
        yield api


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home", db_url=db_url, vault_key=generate_key(), public_url="https://chatbox.example.test"
    )


@pytest.fixture
def runtime(settings: Settings, slack_api: SlackWebApi) -> Iterator[Runtime]:
    built = build_runtime(
        settings,
        platforms=builtin_platforms(),
        platform_settings={"slack": SlackSettings(api_url=slack_api.root + "/api/")},
    )
    try:
        yield built
    finally:
        built.close()


def slack_mailbox(client: TestClient, account: AccountKey) -> tuple[Json, Json]:
    mailbox = create_mailbox(client, account)
    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json={"platform": "slack", "secrets": {"bot_token": TOKEN, "signing_secret": SIGNING}},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    return mailbox, response.json()


def post_event(client: TestClient, connection: Json, name: str) -> None:
    body = payload_bytes("slack", name)
    response = client.post(
        f"/v1/ingest/slack/{connection['id']}", content=body, headers=slack_signature_headers(SIGNING, body)
    )
    assert response.status_code == 200, response.text


def call_tool(runtime: Runtime, mailbox: Json, name: str, arguments: Json) -> types.CallToolResult:
    with serving(create_app(runtime)) as base_url:

        async def go() -> types.CallToolResult:
            async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                return await session.call_tool(name, arguments)

        return run_async(go)


def only_attachment(runtime: Runtime, mailbox: Json) -> Json:
    result = call_tool(runtime, mailbox, "read_chat", {"chat_id": CHAT})
    assert not result.is_error and result.structured_content is not None, text_of(result)
    [attachment] = [a for m in result.structured_content["messages"] for a in m["attachments"]]
    return dict(attachment)


def test_an_inbound_slack_file_is_fetched_with_the_bot_token_through_chatboxs_url_and_read_attachment(
    client: TestClient, account: AccountKey, slack_api: SlackWebApi, runtime: Runtime
) -> None:
    mailbox, connection = slack_mailbox(client, account)
    post_event(client, connection, "file_share")
    attachment = only_attachment(runtime, mailbox)

    fetched = client.get(
        f"/v1/attachments/{attachment['id']}", headers={"Authorization": f"Bearer {mailbox['mcp_token']}"}
    )
    result = call_tool(runtime, mailbox, "read_attachment", {"attachment_id": attachment["id"]})

    assert attachment["kind"] == "image" and attachment["name"] == "failure.png"
    assert fetched.status_code == 200 and fetched.content == PNG_1X1
    assert fetched.headers["content-type"] == "image/png"
    assert not result.is_error, text_of(result)
    [image] = [block for block in result.content if isinstance(block, types.ImageContent)]
    assert base64.b64decode(image.data) == PNG_1X1
    downloads = slack_api.calls_of("download")
    assert len(downloads) == 2 and all(d.headers["authorization"] == f"Bearer {TOKEN}" for d in downloads)
    assert [call.params["file"] for call in slack_api.calls_of("files.info")] == ["F0SCREEN01", "F0SCREEN01"]


def test_a_file_slack_no_longer_has_is_a_clear_error(
    client: TestClient, account: AccountKey, slack_api: SlackWebApi, runtime: Runtime
) -> None:
    mailbox, connection = slack_mailbox(client, account)
    post_event(client, connection, "file_share")
    attachment = only_attachment(runtime, mailbox)
    del slack_api.files["F0SCREEN01"]

    fetched = client.get(
        f"/v1/attachments/{attachment['id']}", headers={"Authorization": f"Bearer {mailbox['mcp_token']}"}
    )
    result = call_tool(runtime, mailbox, "read_attachment", {"attachment_id": attachment["id"]})

    assert fetched.status_code == 404 and "file_not_found" in fetched.json()["message"]
    assert result.is_error and "Slack no longer has this file" in text_of(result)


def test_send_file_uploads_with_the_v2_flow_into_the_thread_and_records_the_message(
    client: TestClient, account: AccountKey, slack_api: SlackWebApi, runtime: Runtime
) -> None:
    mailbox, connection = slack_mailbox(client, account)
    post_event(client, connection, "file_share")

    result = call_tool(
        runtime,
        mailbox,
        "send_file",
        {
            "chat_id": CHAT,
            "filename": "notes.txt",
            "data_base64": base64.b64encode(b"the fix is in").decode(),
            "caption": "here you go",
            "reply_to": "D0ADA:1764171100.000800",
        },
    )

    assert not result.is_error, text_of(result)
    [ask] = slack_api.calls_of("files.getUploadURLExternal")
    assert ask.params["filename"] == "notes.txt" and ask.params["length"] == "13"
    [upload] = slack_api.calls_of("upload")
    assert upload.files["body"][1] == b"the fix is in"
    [complete] = slack_api.calls_of("files.completeUploadExternal")
    assert complete.params["channel_id"] == "D0ADA"
    assert complete.params["initial_comment"] == "here you go"
    assert complete.params["thread_ts"] == "1764171100.000800"
    assert [f["id"] for f in json.loads(complete.params["files"])] == [upload.params["file_id"]]
    assert result.structured_content is not None
    external_id = result.structured_content["external_id"]
    assert external_id.startswith("D0ADA:1764171100.000800:")  # the message's own ts, in the thread
    with runtime.db.session() as db:
        [sent] = db.scalars(select(Message).where(Message.direction == "out")).all()
        assert sent.external_id == external_id
        assert sent.attachments[0]["file_id"] == upload.params["file_id"]


def test_send_file_to_a_channel_the_bot_is_not_in_is_refused(
    client: TestClient, account: AccountKey, slack_api: SlackWebApi, runtime: Runtime
) -> None:
    mailbox, connection = slack_mailbox(client, account)
    post_event(client, connection, "file_share")
    del slack_api.channels["D0ADA"]

    result = call_tool(runtime, mailbox, "send_file", {"chat_id": CHAT, "filename": "a.txt", "data_base64": "eA=="})

    assert result.is_error and "channel_not_found" in text_of(result)
    with runtime.db.session() as db:
        assert not db.scalars(select(Message).where(Message.direction == "out")).all()
