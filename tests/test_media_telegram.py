"""Media both ways on Telegram, through chatbox's faces against the Bot API stand-in on 127.0.0.1: an inbound photo
fetched through chatbox's url (signed link and MCP token) and through `read_attachment` (the real MCP client);
`send_file` as sendPhoto/sendDocument multipart; too-large files, private URLs and unknown ids refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks import Webhook

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.store.models import Message
from connectors import builtin_platforms
from connectors.telegram.spec import TelegramSettings
from tests.conftest import AccountKey
from tests.support.api import create_credential, create_mailbox
from tests.support.files import FileServer, running_file_server
from tests.support.images import PNG_1X1
from tests.support.mcp import mcp_client, run_async, serving, text_of
from tests.support.payloads import payload_bytes
from tests.support.pipeline import new_signing_secret, running_consumer
from tests.support.platforms import TELEGRAM_BOT, TelegramBotApi, running_telegram
from tests.support.receiver import running_receiver

Json = dict[str, Any]
TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
PHOTO_FILE_ID = "AgACAgIAAxkBAAIBK2dP_large"  # the largest size in tests/payloads/telegram/photo_caption.json
CHAT = "telegram:5512345678"


@pytest.fixture
def telegram_api() -> Iterator[TelegramBotApi]:
    with running_telegram({TOKEN: TELEGRAM_BOT}) as api:
        api.add_file(PHOTO_FILE_ID, PNG_1X1, "photos/file_7.png")
        yield api


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_loopback_webhooks=True,
        delivery_retry_base_seconds=0.01,
        mcp_attachment_max_bytes=100_000,
        attachment_max_bytes=200_000,
    )


@pytest.fixture
def runtime(settings: Settings, telegram_api: TelegramBotApi) -> Iterator[Runtime]:
    built = build_runtime(
        settings,
        platforms=builtin_platforms(),
        platform_settings={"telegram": TelegramSettings(api_url=telegram_api.root)},
    )
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def files() -> Iterator[FileServer]:
    with running_file_server() as served:
        yield served


def telegram_mailbox(client: TestClient, account: AccountKey, **fields: Any) -> tuple[Json, Json]:
    mailbox = create_mailbox(client, account, **fields)
    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json={"platform": "telegram", "secrets": {"bot_token": TOKEN}},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    return mailbox, response.json()


def post_update(client: TestClient, api: TelegramBotApi, connection: Json, name: str) -> None:
    secret = str(api.webhooks[TOKEN]["secret_token"])
    response = client.post(
        f"/v1/ingest/telegram/{connection['id']}",
        content=payload_bytes("telegram", name),
        headers={"content-type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
    )
    assert response.status_code == 200, response.text


def call_tool(runtime: Runtime, mailbox: Json, name: str, arguments: Json) -> types.CallToolResult:
    with serving(create_app(runtime)) as base_url:

        async def go() -> types.CallToolResult:
            async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                return await session.call_tool(name, arguments)

        return run_async(go)


def list_tool_names(runtime: Runtime, mailbox: Json) -> set[str]:
    with serving(create_app(runtime)) as base_url:

        async def go() -> set[str]:
            async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                return {tool.name for tool in (await session.list_tools()).tools}

        return run_async(go)


def read_chat_attachments(runtime: Runtime, mailbox: Json) -> list[Json]:
    result = call_tool(runtime, mailbox, "read_chat", {"chat_id": CHAT})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return [a for m in result.structured_content["messages"] for a in m["attachments"]]


def local_path(url: str) -> str:
    """The path and query of a chatbox url (its host is CHATBOX_PUBLIC_URL's, served here by the TestClient)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


# --- inbound ---------------------------------------------------------------------------------------


def test_an_inbound_photo_reaches_the_agent_with_an_id_a_kind_and_a_signed_url_it_can_fetch(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    secret = new_signing_secret()
    credential = create_credential(client, account, kind="hmac_signing", name="sig", value=secret)
    with running_receiver() as receiver:
        mailbox, connection = telegram_mailbox(
            client, account, webhook_url=receiver.url, signing_credential_id=credential["id"]
        )
        with running_consumer(runtime):
            post_update(client, telegram_api, connection, "photo_caption")
            [request] = receiver.wait_for(1)

    payload = Webhook(secret).verify(request.body, request.headers)
    [attachment] = payload["message"]["attachments"]
    assert attachment["id"].startswith("att_")
    assert attachment["kind"] == "image"
    assert attachment["size"] == 84211
    assert "file_id" not in attachment  # the platform's reference stays inside chatbox
    assert attachment["url"].startswith("https://chatbox.example.test/v1/attachments/" + attachment["id"] + "?")
    assert attachment["id"] in payload["content"]

    fetched = client.get(local_path(attachment["url"]))

    assert fetched.status_code == 200, fetched.text
    assert fetched.content == PNG_1X1
    assert [call.params for call in telegram_api.calls_of("getFile")] == [{"file_id": PHOTO_FILE_ID}]
    assert [call.params["file_path"] for call in telegram_api.calls_of("file")] == ["photos/file_7.png"]
    assert mailbox["id"]


def test_the_attachment_url_takes_the_mailboxs_mcp_token_and_refuses_everything_else(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    mailbox, connection = telegram_mailbox(client, account)
    post_update(client, telegram_api, connection, "photo_caption")
    other = create_mailbox(client, account, name="other")
    [attachment] = read_chat_attachments(runtime, mailbox)
    path = f"/v1/attachments/{attachment['id']}"
    expires = local_path(attachment["url"]).split("expires=")[1].split("&")[0]

    with_token = client.get(path, headers={"Authorization": f"Bearer {mailbox['mcp_token']}"})
    other_token = client.get(path, headers={"Authorization": f"Bearer {other['mcp_token']}"})
    no_credential = client.get(path)
    forged = client.get(f"{path}?expires={expires}&signature=AAAA")
    expired = client.get(local_path(attachment["url"]).replace(f"expires={expires}", "expires=1000"))
    unknown = client.get("/v1/attachments/att_01JD3AAAAAAAAAAAAAAAAAAAAA_0", headers=mailbox_auth(mailbox))

    assert with_token.status_code == 200 and with_token.content == PNG_1X1
    assert [r.status_code for r in (other_token, no_credential, forged, expired, unknown)] == [401] * 5
    assert len(telegram_api.calls_of("getFile")) == 1  # only the authorized request reached Telegram


def mailbox_auth(mailbox: Json) -> dict[str, str]:
    return {"Authorization": f"Bearer {mailbox['mcp_token']}"}


def test_read_attachment_returns_an_inbound_photo_as_an_image_block(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    mailbox, connection = telegram_mailbox(client, account)
    post_update(client, telegram_api, connection, "photo_caption")
    [attachment] = read_chat_attachments(runtime, mailbox)

    result = call_tool(runtime, mailbox, "read_attachment", {"attachment_id": attachment["id"]})

    assert not result.is_error, text_of(result)
    [image] = [block for block in result.content if isinstance(block, types.ImageContent)]
    assert image.mime_type == "image/png"
    assert base64.b64decode(image.data) == PNG_1X1


def test_read_attachment_embeds_a_document_as_a_resource(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    document = json.loads(payload_bytes("telegram", "document"))["message"]["document"]
    telegram_api.add_file(document["file_id"], b"%PDF-1.4 tiny", "documents/file_9.pdf")
    mailbox, connection = telegram_mailbox(client, account)
    post_update(client, telegram_api, connection, "document")
    [attachment] = read_chat_attachments(runtime, mailbox)

    result = call_tool(runtime, mailbox, "read_attachment", {"attachment_id": attachment["id"]})

    assert not result.is_error, text_of(result)
    [embedded] = [block for block in result.content if isinstance(block, types.EmbeddedResource)]
    assert isinstance(embedded.resource, types.BlobResourceContents)
    assert base64.b64decode(embedded.resource.blob) == b"%PDF-1.4 tiny"
    assert attachment["kind"] == "file"


def test_read_attachment_refuses_an_unknown_id_and_a_file_over_its_limit_with_clear_errors(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    document = json.loads(payload_bytes("telegram", "document"))["message"]["document"]
    telegram_api.add_file(document["file_id"], b"x" * 150_000, "documents/file_9.pdf")  # over the 100_000 of settings
    mailbox, connection = telegram_mailbox(client, account)
    post_update(client, telegram_api, connection, "document")
    [attachment] = read_chat_attachments(runtime, mailbox)

    unknown = call_tool(runtime, mailbox, "read_attachment", {"attachment_id": "att_01JD3AAAAAAAAAAAAAAAAAAAAA_0"})
    too_large = call_tool(runtime, mailbox, "read_attachment", {"attachment_id": attachment["id"]})

    assert unknown.is_error and "no attachment of this mailbox has that id" in text_of(unknown)
    assert too_large.is_error and "[too_large]" in text_of(too_large)
    assert f"/v1/attachments/{attachment['id']}" in text_of(too_large)
    assert len(telegram_api.calls_of("getFile")) == 1  # the unknown id reached no platform


def test_the_media_tools_are_listed_for_a_telegram_mailbox_and_not_for_one_without_platforms(
    client: TestClient, account: AccountKey, runtime: Runtime
) -> None:
    connected, _ = telegram_mailbox(client, account)
    bare = create_mailbox(client, account, name="bare")

    assert {"read_attachment", "send_file"} <= list_tool_names(runtime, connected)
    assert not {"read_attachment", "send_file"} & list_tool_names(runtime, bare)


# --- outbound --------------------------------------------------------------------------------------


def test_send_file_uploads_an_image_with_send_photo_and_records_it(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    mailbox, connection = telegram_mailbox(client, account)
    post_update(client, telegram_api, connection, "photo_caption")

    result = call_tool(
        runtime,
        mailbox,
        "send_file",
        {
            "chat_id": CHAT,
            "filename": "chart.png",
            "data_base64": base64.b64encode(PNG_1X1).decode(),
            "caption": "the chart",
            "reply_to": "5512345678:42",
        },
    )

    assert not result.is_error, text_of(result)
    [call] = telegram_api.calls_of("sendPhoto")
    assert call.params["chat_id"] == "5512345678"
    assert call.params["caption"] == "the chart"
    assert json.loads(call.params["reply_parameters"])["message_id"] == 42
    assert call.files["photo"] == ("chart.png", PNG_1X1, "image/png")
    with runtime.db.session() as db:
        [sent] = db.scalars(select(Message).where(Message.direction == "out")).all()
        assert sent.text == "the chart"
        assert sent.attachments[0]["name"] == "chart.png" and sent.attachments[0]["kind"] == "image"
    assert result.structured_content is not None
    assert result.structured_content["attachment_id"].startswith("att_")


def test_send_file_downloads_a_url_and_sends_a_document(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime, files: FileServer
) -> None:
    mailbox, connection = telegram_mailbox(client, account)
    post_update(client, telegram_api, connection, "photo_caption")
    files.files["/report.pdf"] = (b"%PDF-1.4 report", "application/pdf")

    result = call_tool(
        runtime, mailbox, "send_file", {"chat_id": CHAT, "url": f"{files.root}/report.pdf", "filename": "report.pdf"}
    )

    assert not result.is_error, text_of(result)
    [call] = telegram_api.calls_of("sendDocument")
    assert call.files["document"] == ("report.pdf", b"%PDF-1.4 report", "application/pdf")
    assert call.params["chat_id"] == "5512345678"


def test_send_file_refuses_private_urls_redirects_and_too_large_files_before_any_platform_call(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime, files: FileServer
) -> None:
    mailbox, connection = telegram_mailbox(client, account)
    post_update(client, telegram_api, connection, "photo_caption")
    files.redirects["/moved.png"] = "http://169.254.169.254/latest/meta-data/"
    too_big = base64.b64encode(b"x" * 200_001).decode()  # over CHATBOX_ATTACHMENT_MAX_BYTES here

    refused = {
        "private": call_tool(
            runtime, mailbox, "send_file", {"chat_id": CHAT, "url": "http://10.0.0.7/a.png", "filename": "a.png"}
        ),
        "metadata": call_tool(
            runtime,
            mailbox,
            "send_file",
            {"chat_id": CHAT, "url": "http://169.254.169.254/latest/meta-data/", "filename": "a.txt"},
        ),
        "redirect": call_tool(
            runtime, mailbox, "send_file", {"chat_id": CHAT, "url": f"{files.root}/moved.png", "filename": "a.png"}
        ),
        "too large": call_tool(
            runtime, mailbox, "send_file", {"chat_id": CHAT, "data_base64": too_big, "filename": "big.bin"}
        ),
        "both sources": call_tool(
            runtime,
            mailbox,
            "send_file",
            {"chat_id": CHAT, "url": f"{files.root}/x", "data_base64": "eA==", "filename": "x.bin"},
        ),
    }

    assert all(result.is_error for result in refused.values()), {k: text_of(v) for k, v in refused.items()}
    assert "private" in text_of(refused["private"])
    assert "link-local" in text_of(refused["metadata"])
    assert "HTTP 302" in text_of(refused["redirect"])
    assert "[too_large]" in text_of(refused["too large"]) and "200000 bytes" in text_of(refused["too large"])
    assert "exactly one of url and data_base64" in text_of(refused["both sources"])
    assert not telegram_api.calls_of("sendPhoto") and not telegram_api.calls_of("sendDocument")
    assert [path for path, _ in files.requests] == ["/moved.png"]  # the redirect's target was never fetched


# --- idempotent send_file --------------------------------------------------------------------------


def test_send_file_retried_with_its_key_posts_once_and_answers_the_first_message(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    mailbox, connection = telegram_mailbox(client, account)
    post_update(client, telegram_api, connection, "photo_caption")
    arguments = {
        "chat_id": CHAT,
        "filename": "chart.png",
        "data_base64": base64.b64encode(PNG_1X1).decode(),
        "caption": "the chart",
        "idempotency_key": "file-1",
    }

    first = call_tool(runtime, mailbox, "send_file", arguments)
    retry = call_tool(runtime, mailbox, "send_file", arguments)
    other = call_tool(runtime, mailbox, "send_file", {**arguments, "data_base64": base64.b64encode(b"GIF89a").decode()})

    assert not first.is_error and not retry.is_error, text_of(first) + text_of(retry)
    assert len(telegram_api.calls_of("sendPhoto")) == 1
    assert first.structured_content is not None and retry.structured_content is not None
    assert retry.structured_content["already_sent"] is True and first.structured_content["already_sent"] is False
    for field in ("message_id", "external_id", "attachment_id"):
        assert retry.structured_content[field] == first.structured_content[field]
    assert "nothing new was posted" in text_of(retry)
    assert other.is_error and "idempotency_key 'file-1' was already used" in text_of(other)
    assert telegram_api.calls_of("sendDocument") == []  # the other file reached no platform
    with runtime.db.session() as db:
        assert len(db.scalars(select(Message).where(Message.direction == "out")).all()) == 1


def test_send_file_without_a_key_posts_every_call(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    mailbox, connection = telegram_mailbox(client, account)
    post_update(client, telegram_api, connection, "photo_caption")
    arguments = {"chat_id": CHAT, "filename": "chart.png", "data_base64": base64.b64encode(PNG_1X1).decode()}

    first = call_tool(runtime, mailbox, "send_file", arguments)
    second = call_tool(runtime, mailbox, "send_file", arguments)

    assert not first.is_error and not second.is_error, text_of(first) + text_of(second)
    assert len(telegram_api.calls_of("sendPhoto")) == 2
    assert first.structured_content is not None and second.structured_content is not None
    assert first.structured_content["external_id"] != second.structured_content["external_id"]


def test_send_file_whose_answer_is_lost_is_an_unknown_outcome_and_a_retry_never_posts_again(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime, files: FileServer
) -> None:
    mailbox, connection = telegram_mailbox(client, account)
    post_update(client, telegram_api, connection, "photo_caption")
    files.files["/report.pdf"] = (b"%PDF-1.4 report", "application/pdf")
    telegram_api.drop_responses["sendDocument"] = [True]  # Telegram posts it; its answer never arrives
    arguments = {"chat_id": CHAT, "url": f"{files.root}/report.pdf", "filename": "report.pdf", "idempotency_key": "f-2"}

    lost = call_tool(runtime, mailbox, "send_file", arguments)
    retry = call_tool(runtime, mailbox, "send_file", arguments)

    assert lost.is_error and "[unknown_outcome]" in text_of(lost), text_of(lost)
    assert "check the chat before resending" in text_of(lost)
    assert retry.is_error and "[unknown_outcome]" in text_of(retry) and "'f-2'" in text_of(retry)
    assert len(telegram_api.calls_of("sendDocument")) == 1
    with runtime.db.session() as db:
        assert db.scalars(select(Message).where(Message.direction == "out")).all() == []
