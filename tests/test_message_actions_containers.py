"""Edits, deletions, reactions and typing on the container platforms: MCP tool → chatbox's HTTP container client →
the real Signal or Discord program (`POST /v1/edit|delete|react|typing`) → the signal-cli or Discord stand-in, in
their wire formats; and their events, as the programs post them, reaching the agent rendered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest
from fastapi.testclient import TestClient

from chatbox.asgi import create_app
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from connectors.discord.translate import dispatch_to_inbound
from connectors.signal.translate import translate_receive
from tests.conftest import AccountKey
from tests.support import discord_program, signal_program
from tests.support.api import create_connection, create_credential, create_mailbox
from tests.support.discord_api import BOT_USER, DiscordStandIn, running_discord
from tests.support.mcp import call_tools, text_of
from tests.support.payloads import load_payload
from tests.support.pipeline import post_inbound, running_consumer
from tests.support.receiver import WebhookReceiver, running_receiver
from tests.support.signal_cli import SignalCliStandIn, running_signal_cli

Json = dict[str, Any]
ADA = signal_program.ADA
DM = "1290000000000000555"
WAIT = 30.0


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_loopback_webhooks=True,
        delivery_retry_base_seconds=0.01,
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def signal_cli() -> Iterator[SignalCliStandIn]:
    with running_signal_cli(signal_program.ACCOUNT) as standin:
        yield standin


@pytest.fixture
def signal(tmp_path: Path, signal_cli: SignalCliStandIn) -> Iterator[signal_program.Program]:
    with signal_program.running_program(tmp_path, SIGNAL_CLI_URL=signal_cli.url) as program:
        yield program


@pytest.fixture
def discord() -> Iterator[DiscordStandIn]:
    with running_discord() as standin:
        yield standin


@pytest.fixture
def discord_bot(tmp_path: Path, discord: DiscordStandIn) -> Iterator[discord_program.Program]:
    with discord_program.running_program(tmp_path, discord) as program:
        discord.wait_until(discord.connected, WAIT, "the program's IDENTIFY")
        yield program


def _mailbox(
    client: TestClient, account: AccountKey, platform: str, program_url: str, token: str, **fields: Any
) -> tuple[Json, Json]:
    mailbox = create_mailbox(client, account, **fields)
    credential = create_credential(client, account, kind="mcp_proxy_auth", name=f"{platform}-out", value=token)
    config = {"outbound_url": f"{program_url}/v1/send", "outbound_credential_id": credential["id"]}
    return mailbox, create_connection(client, account, mailbox["id"], platform=platform, config=config)


def ok(result: types.CallToolResult) -> Json:
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def _signal_inbound(client: TestClient, connection: Json, payload: Json) -> Json:
    message = translate_receive(payload)
    assert message is not None
    return post_inbound(client, connection, message.pop("external_message_id"), **message)


# --- Signal ---------------------------------------------------------------------------------------------


def test_signal_tools_reach_signal_cli_through_the_program(
    client: TestClient,
    account: AccountKey,
    runtime: Runtime,
    signal: signal_program.Program,
    signal_cli: SignalCliStandIn,
) -> None:
    mailbox, connection = _mailbox(client, account, "signal", signal.url, signal_program.OUTBOUND_AUTH)
    theirs = _signal_inbound(client, connection, load_payload("signal", "direct_text"))
    chat = f"signal:{ADA}"

    [sent] = call_tools(create_app(runtime), mailbox, ("send_message", {"chat_id": chat, "text": "On my way."}))
    ours = ok(sent)
    sent_at = int(ours["external_id"].rsplit(":", 1)[1])
    edited, reacted, typing, deleted = call_tools(
        create_app(runtime),
        mailbox,
        ("edit_message", {"message_id": ours["message_id"], "text": "On my way, 5 min."}),
        ("react", {"message_id": theirs["message_id"], "emoji": "👍"}),
        ("typing", {"chat_id": chat}),
        ("delete_message", {"message_id": ours["message_id"]}),
    )

    for result in (edited, reacted, typing, deleted):
        ok(result)
    edit = signal_cli.sends[-1]
    assert edit == {"recipient": [ADA], "message": "On my way, 5 min.", "editTimestamp": sent_at}
    reaction, typed, deletion = signal_cli.actions
    their_stamp = int(str(load_payload("signal", "direct_text")["envelope"]["timestamp"]))
    assert reaction == (
        "sendReaction",
        {"recipient": [ADA], "emoji": "👍", "targetAuthor": ADA, "targetTimestamp": their_stamp, "remove": False},
    )
    assert typed == ("sendTyping", {"recipient": [ADA]})
    assert deletion == ("remoteDelete", {"recipient": [ADA], "targetTimestamp": sent_at})


def test_signal_events_reach_the_agent_rendered(
    client: TestClient,
    account: AccountKey,
    runtime: Runtime,
    signal: signal_program.Program,
    receiver: WebhookReceiver,
) -> None:
    mailbox, connection = _mailbox(
        client, account, "signal", signal.url, signal_program.OUTBOUND_AUTH, webhook_url=receiver.url
    )
    _signal_inbound(client, connection, load_payload("signal", "direct_text"))
    focused, sent = call_tools(
        create_app(runtime),
        mailbox,
        ("switch_chat", {"chat_id": f"signal:{ADA}"}),
        ("send_message", {"text": "Lunch?"}),
    )
    ok(focused)
    ours = ok(sent)
    reaction = load_payload("signal", "reaction")
    reaction["envelope"]["dataMessage"]["reaction"]["targetSentTimestamp"] = int(ours["external_id"].split(":")[-1])
    edit = load_payload("signal", "edit")
    edit["envelope"]["editMessage"]["targetSentTimestamp"] = load_payload("signal", "direct_text")["envelope"][
        "timestamp"
    ]

    with running_consumer(runtime):
        _signal_inbound(client, connection, reaction)
        _signal_inbound(client, connection, edit)
        _signal_inbound(client, connection, load_payload("signal", "remote_delete"))
        requests = receiver.wait_for(4)

    reacted, edited, deleted = (r.json() for r in requests[1:])
    assert reacted["content"] == 'Ada reacted ❤️ to your message "Lunch?".'
    assert reacted["message"]["target_message_id"] == ours["message_id"]
    original = load_payload("signal", "direct_text")["envelope"]["dataMessage"]["message"]
    assert edited["content"] == f'Ada edited their message "{original}". It now reads: hi, are you there? (edited)'
    assert deleted["type"] == "delete"
    assert deleted["content"] == 'Ada deleted their message "hi, are you there? (edited)".'


# --- Discord --------------------------------------------------------------------------------------------


def test_discord_tools_reach_the_discord_api_through_the_program(
    client: TestClient,
    account: AccountKey,
    runtime: Runtime,
    discord_bot: discord_program.Program,
    discord: DiscordStandIn,
) -> None:
    mailbox, connection = _mailbox(client, account, "discord", discord_bot.url, discord_program.OUTBOUND_AUTH)
    message = dispatch_to_inbound("MESSAGE_CREATE", load_payload("discord", "dm_text")["d"], bot_user_id=BOT_USER["id"])
    assert message is not None
    theirs = post_inbound(client, connection, message.pop("external_message_id"), **message)

    [sent] = call_tools(create_app(runtime), mailbox, ("send_message", {"chat_id": f"discord:{DM}", "text": "Yes!"}))
    ours = ok(sent)
    focused, edited, reacted, unreacted, typing, deleted = call_tools(
        create_app(runtime),
        mailbox,
        ("switch_chat", {"chat_id": f"discord:{DM}"}),
        ("edit_message", {"message_id": ours["message_id"], "text": "Yes, here."}),
        ("react", {"message_id": theirs["message_id"], "emoji": "👍"}),
        ("react", {"message_id": theirs["message_id"], "emoji": "👍", "remove": True}),
        ("typing", {}),
        ("delete_message", {"message_id": ours["message_id"]}),
    )

    for result in (focused, edited, reacted, unreacted, typing, deleted):
        ok(result)
    mine, their_id = ours["external_id"], "1312345678901234601"
    assert [(c.method, c.path, c.body) for c in discord.actions] == [
        ("PATCH", f"/channels/{DM}/messages/{mine}", {"content": "Yes, here."}),
        ("PUT", f"/channels/{DM}/messages/{their_id}/reactions/👍/@me", None),
        ("DELETE", f"/channels/{DM}/messages/{their_id}/reactions/👍/@me", None),
        ("POST", f"/channels/{DM}/typing", None),
        ("DELETE", f"/channels/{DM}/messages/{mine}", None),
    ]


def test_typing_without_a_chat_and_without_focus_is_a_tool_error(
    client: TestClient, account: AccountKey, runtime: Runtime, discord_bot: discord_program.Program
) -> None:
    mailbox, _ = _mailbox(client, account, "discord", discord_bot.url, discord_program.OUTBOUND_AUTH)

    [result] = call_tools(create_app(runtime), mailbox, ("typing", {}))

    assert result.is_error and "focal" in text_of(result)


def test_the_program_refuses_an_action_missing_its_fields(discord_bot: discord_program.Program) -> None:
    body = {"request_id": "r1", "connection_id": "c", "platform": "discord", "chat_id": DM}
    headers = {"Authorization": f"Bearer {discord_program.OUTBOUND_AUTH}"}

    edit = httpx.post(f"{discord_bot.url}/v1/edit", json=body, headers=headers, timeout=10)
    unauthorized = httpx.post(f"{discord_bot.url}/v1/react", json=body, timeout=10)

    assert edit.status_code == 422 and "message_id" in edit.json()["message"]
    assert unauthorized.status_code == 401
