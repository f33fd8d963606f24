"""The gateway client: discord.py holds the WebSocket (IDENTIFY, heartbeats, RESUME, reconnect with backoff) and
hands every frame it receives to `on_frame` as the raw JSON Discord sent.

Why raw frames: the REST history a backfill reads carries the same message objects, so one pure
translation (translate.py) serves both, and nothing depends on what discord.py happens to cache. The
frames come from discord.py's documented `on_socket_raw_receive` (enabled by `enable_debug_events`),
dispatched in arrival order; `on_frame` only queues them, so that order is kept.

Pointing discord.py elsewhere than discord.com (a stand-in, a proxy): `Route.BASE` is its REST root,
and the gateway URL is asked of `GET {DISCORD_API_URL}/gateway/bot` at start, as Discord recommends
(discord.py's plain `Client` otherwise connects to the fixed `DiscordWebSocket.DEFAULT_GATEWAY`, which
it also falls back to after an INVALID_SESSION; both are class attributes, hence set process-wide:
this program holds one client).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from connectors.discord.translate import ChannelInfo

log = logging.getLogger("connectors.discord.gateway")

# Dispatches the bridge acts on; the rest (presence, typing, guild updates) discord.py keeps to itself.
FORWARDED = frozenset(
    {
        "READY",
        "RESUMED",
        "MESSAGE_CREATE",
        "MESSAGE_UPDATE",
        "MESSAGE_DELETE",
        "MESSAGE_REACTION_ADD",
        "MESSAGE_REACTION_REMOVE",
    }
)

FrameHandler = Callable[[str, dict[str, Any]], None]


class _NoVoiceWarnings(logging.Filter):
    """discord.py warns at every start that voice libraries are missing; this program never joins a voice
    channel, so the two lines would only teach operators to skim past warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


logging.getLogger("discord.client").addFilter(_NoVoiceWarnings())


def gateway_intents() -> discord.Intents:
    """Servers (channel and thread names), their messages, reactions and DMs, and the privileged message
    content (enable "Message Content Intent" for the bot in the Developer Portal, or Discord closes with 4014)."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.guild_reactions = True
    intents.dm_reactions = True
    intents.message_content = True
    return intents


def point_at(api_url: str) -> None:
    """discord.py's REST calls go to `api_url` (its Route.BASE)."""
    Route.BASE = api_url.rstrip("/")


class GatewayClient(discord.Client):
    def __init__(self, on_frame: FrameHandler) -> None:
        super().__init__(
            intents=gateway_intents(),
            enable_debug_events=True,
            max_messages=None,  # no message cache: messages are relayed, never looked up
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
        )
        self._on_frame = on_frame
        self.connected = False
        self.sessions = 0  # READY or RESUMED seen: this client got through at least once

    async def setup_hook(self) -> None:
        # After login (GET /users/@me checked the token), before the first connect.
        _, url, limits = await self.http.get_bot_gateway()
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
        log.info(
            "gateway url from /gateway/bot",
            extra={"gateway": url, "session_starts_remaining": limits.get("remaining")},
        )

    async def on_socket_raw_receive(self, raw: str) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            return
        if not isinstance(frame, dict) or frame.get("op") != 0:
            return
        event, data = frame.get("t"), frame.get("d")
        if event not in FORWARDED or not isinstance(data, dict):
            return
        if event in ("READY", "RESUMED"):
            self.connected = True
            self.sessions += 1
        self._on_frame(str(event), data)

    async def on_disconnect(self) -> None:
        if self.connected and not self.is_closed():
            log.warning("gateway disconnected; discord.py reconnects (RESUME when Discord allows it)")
        self.connected = False

    def channel_info(self, channel_id: str) -> ChannelInfo | None:
        """What the cache knows of a channel (its name; a thread's parent), without a network call."""
        try:
            channel = self.get_channel(int(channel_id))
        except ValueError:
            return None
        if isinstance(channel, discord.Thread):
            parent = channel.parent
            return ChannelInfo(name=channel.name, is_thread=True, parent_name=getattr(parent, "name", None))
        name = getattr(channel, "name", None)
        return ChannelInfo(name=name) if isinstance(name, str) else None
