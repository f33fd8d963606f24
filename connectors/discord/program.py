"""The Discord program: the relay (spool, inbox, `/v1/send`, `/healthz`) around a discord.py gateway client.

Start: log in (`GET /users/@me`: a refused token stops the program with one clear line), ask
`/gateway/bot` for the gateway, connect. Every frame goes through the bridge into the spool; chatbox
sends arrive on `/v1/send` and go out over REST. discord.py reconnects and resumes by itself; should its
client stop for any other reason (a payload its parser chokes on, an outage longer than its retries),
a fresh client starts after a backoff, and the new session's backfill covers the gap. SIGTERM: the
gateway closes first, frames already received are spooled, then the relay drains the sends in flight
and the inbox's current POST, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import aiohttp
import discord

from connectors.discord import media
from connectors.discord.bridge import Bridge
from connectors.discord.client import GatewayClient, point_at
from connectors.discord.rest import DiscordRest
from connectors.discord.send import discord_actions, send_message
from connectors.discord.settings import DiscordSettings
from connectors.relay.media import FileRequest, FileSent, MediaHandlers
from connectors.relay.program import Relay
from connectors.relay.server import SendRequest, Sent

log = logging.getLogger("connectors.discord")

CLOSE_SECONDS = 10.0
FIRST_RESTART_SECONDS = 1.0
LONGEST_RESTART_SECONDS = 60.0


class GatewayFailed(Exception):
    """The gateway refused this bot for good (token, intents): the program exits 1 with this line."""


class Gateway:
    """Keeps one discord.py client connected until `stop`, starting a fresh one when it gives up."""

    def __init__(self, token: str, bridge: Bridge) -> None:
        self._token = token
        self._bridge = bridge
        self.client: GatewayClient | None = None
        self.restarts = 0

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected and not self.client.is_closed()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            client = GatewayClient(self._bridge.on_frame)
            self.client = client
            self._bridge.channels = client.channel_info
            running = asyncio.create_task(client.start(self._token, reconnect=True), name="discord-gateway")
            stopping = asyncio.create_task(stop.wait(), name="stop")
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(client.close(), CLOSE_SECONDS)
            error = await _ended(running)
            if stop.is_set():
                return
            if isinstance(error, GatewayFailed):
                raise error
            failures = 1 if client.sessions else failures + 1
            delay = min(LONGEST_RESTART_SECONDS, FIRST_RESTART_SECONDS * 2 ** min(failures - 1, 10))
            log.error(
                "the gateway client stopped; starting a new one (its READY backfills the gap)",
                extra={"error": repr(error)[:300], "retry_in": round(delay, 1)},
            )
            self.restarts += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))


async def _ended(running: asyncio.Task[None]) -> BaseException | None:
    """How the client's task ended: None when it stopped because it was closed, a GatewayFailed for what no
    restart can fix, else the exception."""
    try:
        await asyncio.wait_for(running, CLOSE_SECONDS)
    except discord.LoginFailure:
        return GatewayFailed("Discord refused DISCORD_BOT_TOKEN (401 on /users/@me): check the bot's token")
    except discord.PrivilegedIntentsRequired:
        return GatewayFailed(
            "Discord refused the gateway intents (4014): enable the Message Content Intent for this bot "
            "in the Developer Portal"
        )
    except discord.ConnectionClosed as exc:
        if exc.code in (4004, 4010, 4011, 4012, 4013, 4014):
            return GatewayFailed(
                f"the gateway refused this bot with close code {exc.code} ({exc.reason or 'no reason'})"
            )
        return exc
    except (TimeoutError, asyncio.CancelledError):
        running.cancel()
        return None
    except Exception as exc:
        return exc
    return None


async def serve(settings: DiscordSettings, stop: asyncio.Event) -> None:
    """The whole program, until `stop`; raises GatewayFailed when Discord refuses the bot."""
    token = settings.discord_bot_token.get_secret_value()
    point_at(settings.discord_api_url)
    async with aiohttp.ClientSession() as session:
        rest = DiscordRest(settings.discord_api_url, token, session)
        gateway: Gateway | None = None

        async def send(request: SendRequest) -> str | Sent:
            return await send_message(rest, request)

        async def health() -> tuple[bool, dict[str, Any]]:
            connected = gateway is not None and gateway.connected
            details: dict[str, Any] = {"gateway": "connected" if connected else "disconnected"}
            details["spool"] = relay.spool.count()
            if relay.inbox.last_error:
                details["chatbox"] = relay.inbox.last_error
            return connected, details

        async def send_file(request: FileRequest, data: bytes) -> FileSent:
            return await media.send_file(rest, request, data)

        handlers = MediaHandlers(send_file=send_file, open_attachment=media.open_attachment)
        relay = Relay(settings, send=send, health=health, media=handlers, actions=discord_actions(rest))
        async with relay:
            bridge = Bridge(relay.inbox, rest)
            gateway = Gateway(token, bridge)
            frames = asyncio.create_task(bridge.run(), name="discord-frames")
            try:
                await gateway.run(stop)
            except GatewayFailed as exc:
                log.error(str(exc))
                raise
            finally:
                frames.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await frames
                await bridge.finish()
