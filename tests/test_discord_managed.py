"""Discord with one command: `chatbox dev` runs the real Discord program (`python -m connectors.discord`) for a
connection created without outbound_url, against the Discord stand-in; a Discord message reaches the agent
signed, an MCP send reaches Discord's REST API, and stopping chatbox dev stops the program."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
from mcp import types
from standardwebhooks import Webhook

from tests.support.discord_api import BOT_TOKEN, running_discord
from tests.support.mcp import mcp_client, run_async, text_of
from tests.support.pipeline import new_signing_secret
from tests.support.receiver import running_receiver
from tests.test_dev import BOOTSTRAP_KEY, chatbox_dev

WAIT_SECONDS = 60
CHANNEL = "1100000000000000020"
STARTED = re.compile(r"started the discord program of connection (\S+) \(pid (\d+)\)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_chatbox_dev_runs_the_discord_program_of_a_managed_connection(tmp_path: Path) -> None:
    secret = new_signing_secret()
    workdir = tmp_path / "project"
    workdir.mkdir()
    with (
        running_receiver() as receiver,
        running_discord() as discord,
        chatbox_dev(workdir, "discord-managed", bootstrap_api_key=BOOTSTRAP_KEY) as run,
        httpx.Client(base_url=run.base_url, headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"}, timeout=10) as api,
    ):
        signing = api.post("/v1/credentials", json={"name": "sig", "kind": "hmac_signing", "value": secret})
        mailbox = api.post(
            "/v1/mailboxes",
            json={"name": "agent", "webhook_url": receiver.url, "signing_credential_id": signing.json()["id"]},
        ).json()
        created = api.post(
            f"/v1/mailboxes/{mailbox['id']}/connections",
            json={"platform": "discord", "config": {"api_url": discord.root}, "secrets": {"bot_token": BOT_TOKEN}},
        )
        assert created.status_code == 201, created.text
        discord.wait_until(discord.connected, WAIT_SECONDS, "the program's IDENTIFY")
        posted = discord.post_message(CHANNEL, "anyone there?")
        [request] = receiver.wait_for(1, timeout=WAIT_SECONDS)

        async def agent_replies() -> types.CallToolResult:
            async with mcp_client(f"{run.base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                await session.call_tool("switch_chat", {"chat_id": f"discord:{CHANNEL}"})
                return await session.call_tool("send_message", {"text": "Here.", "reply_to": posted["id"]})

        sent = run_async(agent_replies)
        [(connection_id, pid)] = STARTED.findall(run.errors())

    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["chat_id"] == f"discord:{CHANNEL}"
    assert payload["message"]["text"] == "anyone there?"
    assert not sent.is_error, text_of(sent)
    assert [body["content"] for body in discord.sent_to(CHANNEL)] == ["Here."]
    assert connection_id == created.json()["id"]
    assert f"[discord {connection_id}]" in run.errors()
    for token in (created.json()["inbound_token"], BOT_TOKEN):
        assert token not in run.errors()
    assert not _alive(int(pid))
