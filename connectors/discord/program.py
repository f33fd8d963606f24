"""The Discord program: the relay (spool, inbox, `/v1/send`, `/healthz`) around a discord.py gateway client.

Start: log in (`GET /users/@me`: a refused token stops the program with one clear line), ask
`/gateway/bot` for the gateway, connect. Every frame goes through the bridge into the spool; chatbox
sends arrive on `/v1/send` and go out over REST. SIGTERM: the gateway closes first, frames already
received are spooled, then the relay drains the sends in flight and the inbox's current POST, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import discord

from connectors.discord.bridge import Bridge
from connectors.discord.client import GatewayClient, point_at
from connectors.discord.rest import DiscordRest
from connectors.discord.send import send_message
from connectors.discord.settings import DiscordSettings
from connectors.relay.program import Relay
from connectors.relay.server import SendRequest

log = logging.getLogger("connectors.discord")

CLOSE_SECONDS = 10.0


class GatewayFailed(Exception):
    """The gateway client stopped for good (token refused, intents not enabled, ...): the program exits 1."""


async def serve(settings: DiscordSettings, stop: asyncio.Event) -> None:
    """The whole program, until `stop` or until the gateway client gives up."""
    token = settings.discord_bot_token.get_secret_value()
    point_at(settings.discord_api_url)
    async with aiohttp.ClientSession() as session:
        rest = DiscordRest(settings.discord_api_url, token, session)
        client: GatewayClient | None = None

        async def send(request: SendRequest) -> str:
            return await send_message(rest, request)

        async def health() -> tuple[bool, dict[str, Any]]:
            connected = client is not None and client.connected and not client.is_closed()
            details: dict[str, Any] = {"gateway": "connected" if connected else "disconnected"}
            details["spool"] = relay.spool.count()
            if relay.inbox.last_error:
                details["chatbox"] = relay.inbox.last_error
            return connected, details

        relay = Relay(settings, send=send, health=health)
        async with relay:
            bridge = Bridge(relay.inbox, rest)
            client = GatewayClient(bridge.on_frame)
            bridge.channels = client.channel_info
            frames = asyncio.create_task(bridge.run(), name="discord-frames")
            gateway = asyncio.create_task(client.start(token, reconnect=True), name="discord-gateway")
            stopping = asyncio.create_task(stop.wait(), name="stop")
            try:
                await asyncio.wait({gateway, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(client.close(), CLOSE_SECONDS)
                failure = await _outcome(gateway)
                frames.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await frames
                await bridge.finish()
            if failure is not None:
                raise failure


async def _outcome(gateway: asyncio.Task[None]) -> GatewayFailed | None:
    """Why the gateway client stopped, as one clear line; None when it stopped because we closed it."""
    try:
        await asyncio.wait_for(gateway, CLOSE_SECONDS)
    except discord.LoginFailure:
        return GatewayFailed("Discord refused DISCORD_BOT_TOKEN (401 on /users/@me): check the bot's token")
    except discord.PrivilegedIntentsRequired:
        return GatewayFailed(
            "Discord refused the gateway intents (4014): enable the Message Content Intent for this bot "
            "in the Developer Portal"
        )
    except discord.GatewayNotFound:
        return GatewayFailed("GET /gateway/bot failed: is DISCORD_API_URL right, and is Discord up?")
    except discord.ConnectionClosed as exc:
        return GatewayFailed(f"the gateway closed with code {exc.code} and cannot be resumed")
    except (TimeoutError, asyncio.CancelledError):
        gateway.cancel()
        return None
    except discord.HTTPException as exc:
        return GatewayFailed(f"Discord answered {exc.status} while connecting: {exc.text[:200]}")
    return None
