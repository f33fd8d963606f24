"""The Discord program between the Discord stand-in (REST + gateway) and a real `chatbox dev` (API, queue, worker,
webhook): a Discord message reaches the agent as a signed webhook, an MCP send reaches Discord's REST API,
and nothing is lost or delivered twice across a dropped socket, an invalidated session, a kill -9 of the
program, or while chatbox is down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mcp import types
from standardwebhooks import Webhook

from tests.support.cli import wait_for
from tests.support.discord_api import BOT_TOKEN, DiscordStandIn, running_discord
from tests.support.discord_program import CHATBOX_KEY, OUTBOUND_AUTH, Program, chatbox_dev, running_program
from tests.support.mcp import mcp_client, run_async, text_of
from tests.support.pipeline import new_signing_secret
from tests.support.ports import reserved_port
from tests.support.receiver import WebhookReceiver, running_receiver

CHANNEL = "1100000000000000020"
OTHER_CHANNEL = "1100000000000000021"
WAIT_SECONDS = 60


@dataclass
class Setup:
    secret: str
    mailbox: dict[str, Any]
    connection: dict[str, Any]

    def program_vars(self, base_url: str) -> dict[str, str]:
        return {
            "CHATBOX_API_URL": base_url,
            "CHATBOX_CONNECTION_ID": self.connection["id"],
            "CHATBOX_INBOUND_TOKEN": self.connection["inbound_token"],
        }


def set_up_discord_mailbox(base_url: str, receiver: WebhookReceiver, connector_port: int) -> Setup:
    secret = new_signing_secret()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {CHATBOX_KEY}"}, timeout=10) as api:
        signing = api.post("/v1/credentials", json={"name": "sig", "kind": "hmac_signing", "value": secret})
        outbound = api.post("/v1/credentials", json={"name": "out", "kind": "mcp_proxy_auth", "value": OUTBOUND_AUTH})
        mailbox = api.post(
            "/v1/mailboxes",
            json={"name": "agent", "webhook_url": receiver.url, "signing_credential_id": signing.json()["id"]},
        )
        assert mailbox.status_code == 201, mailbox.text
        connection = api.post(
            f"/v1/mailboxes/{mailbox.json()['id']}/connections",
            json={
                "platform": "discord",
                "config": {
                    "outbound_url": f"http://127.0.0.1:{connector_port}/v1/send",
                    "outbound_credential_id": outbound.json()["id"],
                },
            },
        )
        assert connection.status_code == 201, connection.text
    return Setup(secret, mailbox.json(), connection.json())


def spool_of(program: Program) -> int:
    return int(program.health().json()["spool"])


def texts(setup: Setup, receiver: WebhookReceiver) -> list[str]:
    return [Webhook(setup.secret).verify(r.body, r.headers)["message"]["text"] for r in receiver.requests]


def test_a_discord_message_reaches_the_agent_signed_and_an_mcp_send_reaches_discord(tmp_path: Path) -> None:
    with (
        running_receiver() as receiver,
        running_discord() as discord,
        reserved_port() as chatbox_port,
        reserved_port() as connector_port,
        chatbox_dev(tmp_path / "chatbox", chatbox_port) as base_url,
    ):
        setup = set_up_discord_mailbox(base_url, receiver, connector_port)
        with running_program(tmp_path, discord, port=connector_port, **setup.program_vars(base_url)) as program:
            discord.wait_until(discord.connected, WAIT_SECONDS, "the program's IDENTIFY")
            posted = discord.post_message(CHANNEL, "can you summarise the release notes?")
            [request] = receiver.wait_for(1, timeout=WAIT_SECONDS)

            async def agent_replies() -> list[types.CallToolResult]:
                url = f"{base_url}/mcp/{setup.mailbox['id']}"
                async with mcp_client(url, setup.mailbox["mcp_token"]) as session:
                    return [
                        await session.call_tool("switch_chat", {"chat_id": f"discord:{CHANNEL}"}),
                        await session.call_tool("send_message", {"text": "On it.", "reply_to": posted["id"]}),
                    ]

            switched, sent = run_async(agent_replies)
            logs = program.logs()

    payload = Webhook(setup.secret).verify(request.body, request.headers)
    assert payload["chat_id"] == f"discord:{CHANNEL}"
    assert payload["message"]["text"] == "can you summarise the release notes?"
    assert payload["message"]["external_id"] == posted["id"]
    assert payload["message"]["sender_name"] == "Ada"
    assert not switched.is_error and not sent.is_error, text_of(sent)
    [body] = discord.sent_to(CHANNEL)
    assert body["content"] == "On it."
    assert body["message_reference"]["message_id"] == posted["id"]
    assert sent.structured_content is not None
    assert sent.structured_content["external_id"].isdigit()
    for secret in (BOT_TOKEN, setup.connection["inbound_token"], OUTBOUND_AUTH):
        assert secret not in logs


def post_numbered(discord: DiscordStandIn, numbers: range, channel: str = CHANNEL) -> None:
    for n in numbers:
        discord.post_message(channel, f"message {n}")


def test_nothing_is_lost_or_delivered_twice_across_gaps_a_kill_and_chatbox_down(tmp_path: Path) -> None:
    with (
        running_receiver() as receiver,
        running_discord() as discord,
        reserved_port() as chatbox_port,
        reserved_port() as connector_port,
    ):
        with chatbox_dev(tmp_path / "chatbox", chatbox_port, "chatbox-1") as base_url:
            setup = set_up_discord_mailbox(base_url, receiver, connector_port)
            program_vars = setup.program_vars(base_url)
            with running_program(tmp_path, discord, "first", port=connector_port, **program_vars) as first:
                discord.wait_until(discord.connected, WAIT_SECONDS, "the first IDENTIFY")
                post_numbered(discord, range(0, 5))
                post_numbered(discord, range(5, 7), OTHER_CHANNEL)
                receiver.wait_for(7, timeout=WAIT_SECONDS)

                # A dropped socket: the stand-in keeps what it dispatches meanwhile, the RESUME replays it.
                discord.drop_socket()
                post_numbered(discord, range(7, 10))
                discord.wait_until(lambda: len(discord.resumes) == 1 and discord.connected(), WAIT_SECONDS, "RESUME")
                # A session Discord forgot: what was written meanwhile is only in the channels' history.
                discord.drop_socket(resumable=False)
                post_numbered(discord, range(10, 13))
                post_numbered(discord, range(13, 15), OTHER_CHANNEL)
                discord.wait_until(
                    lambda: len(discord.identifies) == 2 and discord.connected(), WAIT_SECONDS, "IDENTIFY"
                )
                receiver.wait_for(15, timeout=WAIT_SECONDS)

                post_numbered(discord, range(15, 40))
                receiver.wait_for(17, timeout=WAIT_SECONDS)
                first.process.kill()  # mid-stream: some delivered, some spooled, some never read off the socket
                first.process.wait(timeout=15)
            post_numbered(discord, range(40, 45))  # while the program is down
            with running_program(tmp_path, discord, "second", port=connector_port, **program_vars) as second:
                receiver.wait_for(45, timeout=WAIT_SECONDS)
                wait_for(lambda: spool_of(second) == 0 or None, timeout=WAIT_SECONDS, what="an empty spool")

        # chatbox is down: messages arriving now wait in the spool.
        with running_program(tmp_path, discord, "third", port=connector_port, **program_vars) as third:
            discord.wait_until(lambda: len(discord.identifies) == 4 and discord.connected(), WAIT_SECONDS, "IDENTIFY")
            post_numbered(discord, range(45, 50))
            wait_for(lambda: spool_of(third) == 5 or None, timeout=WAIT_SECONDS, what="five spooled messages")
            with chatbox_dev(tmp_path / "chatbox", chatbox_port, "chatbox-2"):
                receiver.wait_for(50, timeout=WAIT_SECONDS)
                wait_for(lambda: spool_of(third) == 0 or None, timeout=WAIT_SECONDS, what="the spool drained")
            logs = third.logs() + first.logs() + second.logs()

    delivered = texts(setup, receiver)
    assert sorted(delivered, key=lambda text: int(text.split()[1])) == [f"message {n}" for n in range(50)]
    assert len(delivered) == len(set(delivered)) == 50  # nothing twice
    for secret in (BOT_TOKEN, setup.connection["inbound_token"], OUTBOUND_AUTH):
        assert secret not in logs
