"""From gateway frames to the inbox: translation, per-channel cursors, and the backfill after a gap.

Frames are queued in arrival order and handled one at a time by `run`, so the spool keeps Discord's
order. A new message is spooled together with its channel's cursor (the last message id seen there) in
one transaction; messages that are nothing for the agent (the bot's own, system messages) move the
cursor too.

A RESUME replays what the socket missed, so nothing more is needed then. A new session (READY: the
first after a start, or after Discord refused a RESUME) does not: messages written while no socket
was open would be lost, the failure gateway bots are known for. So after every READY, each channel
seen before is read with `GET /channels/{id}/messages?after=<cursor>` before any newer frame is handled.
Overlap is harmless: a message at or below its channel's cursor is skipped, the spool keys messages by
id, and chatbox answers a repeat as a duplicate. Edits, deletions and reactions made during a gap are not
in the history and stay unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from connectors.discord.rest import DiscordHttpError, DiscordRest, DiscordUnreachable
from connectors.discord.translate import ChannelLookup, dispatch_to_inbound, message_to_inbound
from connectors.relay.inbox import Inbox

log = logging.getLogger("connectors.discord.bridge")

CHANNELS_STATE = "discord.channels"  # JSON {channel id: guild id, "" for a DM}
CURSOR_PREFIX = "discord.cursor."
HISTORY_PAGE = 100
BACKFILL_ATTEMPTS = 4
LONGEST_BACKFILL_WAIT_SECONDS = 60.0


def cursor_key(channel_id: str) -> str:
    return CURSOR_PREFIX + channel_id


class Bridge:
    def __init__(self, inbox: Inbox, rest: DiscordRest, channels: ChannelLookup | None = None) -> None:
        self.inbox = inbox
        self.rest = rest
        self.channels = channels
        self.bot_user_id: str | None = None
        self.backfills = 0
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._stopping = False
        raw = inbox.spool.get_state(CHANNELS_STATE)
        known = json.loads(raw) if raw else {}
        self._guilds: dict[str, str] = {str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {}
        self._cursors: dict[str, int] = {}
        for channel_id in self._guilds:
            cursor = inbox.spool.get_state(cursor_key(channel_id))
            if cursor and cursor.isdigit():
                self._cursors[channel_id] = int(cursor)

    def on_frame(self, event: str, data: dict[str, Any]) -> None:
        """Queue a gateway dispatch (called in arrival order, on the loop)."""
        self._queue.put_nowait((event, data))

    async def run(self) -> None:
        while True:
            event, data = await self._queue.get()
            try:
                await self.handle(event, data)
            except Exception:
                # A frame that cannot be handled must not stop the ones after it.
                log.exception("a gateway frame could not be handled; skipped", extra={"event": event})

    async def finish(self) -> None:
        """Spool what is still queued (the gateway is closed by then), without starting a backfill."""
        self._stopping = True
        while not self._queue.empty():
            event, data = self._queue.get_nowait()
            with contextlib.suppress(Exception):
                await self.handle(event, data)

    async def handle(self, event: str, data: dict[str, Any]) -> None:
        if event == "READY":
            user = data.get("user")
            if isinstance(user, dict) and user.get("id") is not None:
                self.bot_user_id = str(user["id"])
            log.info("gateway session ready (new session)", extra={"known_channels": len(self._guilds)})
            if not self._stopping:
                await self.backfill()
        elif event == "RESUMED":
            log.info("gateway session resumed: Discord replays what the socket missed")
        elif event == "MESSAGE_CREATE":
            await self.take_new(data, source="gateway")
        else:
            message = dispatch_to_inbound(event, data, bot_user_id=self.bot_user_id, channels=self.channels)
            if message is not None:
                new = await self.inbox.submit(message)
                self._log_spooled(message, new, "gateway")

    async def take_new(self, data: dict[str, Any], *, source: str) -> None:
        """A message object (a MESSAGE_CREATE, or one page item of a backfill): spooled with its channel's cursor."""
        message_id, channel_id = str(data.get("id", "")), str(data.get("channel_id", ""))
        if not message_id.isdigit() or not channel_id.isdigit():
            return
        if int(message_id) <= self._cursors.get(channel_id, -1):
            return  # seen already (a backfill overlapping the live socket, or a replay)
        state = {cursor_key(channel_id): message_id}
        if channel_id not in self._guilds:
            self._guilds[channel_id] = str(data.get("guild_id") or "")
            state[CHANNELS_STATE] = json.dumps(self._guilds, separators=(",", ":"))
        message = message_to_inbound(data, bot_user_id=self.bot_user_id, channels=self.channels)
        if message is None:
            await asyncio.to_thread(self._set_states, state)
        else:
            new = await self.inbox.submit(message, state=state)
            self._log_spooled(message, new, source)
        self._cursors[channel_id] = int(message_id)

    async def backfill(self) -> None:
        """Read every known channel's history since its cursor into the inbox, oldest first."""
        self.backfills += 1
        total = 0
        for channel_id in list(self._cursors):
            total += await self._backfill_channel(channel_id)
        log.info("backfill done", extra={"channels": len(self._cursors), "messages": total})

    async def _backfill_channel(self, channel_id: str) -> int:
        guild_id = self._guilds.get(channel_id) or None
        fetched = 0
        while not self._stopping:
            after = str(self._cursors[channel_id])
            page = await self._history_page(channel_id, after)
            if page is None:
                break
            for item in page:
                if guild_id is not None:
                    item.setdefault("guild_id", guild_id)  # REST history leaves it out; it tells a DM from a server
                await self.take_new(item, source="backfill")
            fetched += len(page)
            if len(page) < HISTORY_PAGE or str(self._cursors[channel_id]) == after:
                break
        return fetched

    async def _history_page(self, channel_id: str, after: str) -> list[dict[str, Any]] | None:
        for attempt in range(1, BACKFILL_ATTEMPTS + 1):
            try:
                return await self.rest.messages_after(channel_id, after, HISTORY_PAGE)
            except DiscordHttpError as exc:
                if exc.status in (403, 404):
                    log.warning(
                        "channel history not readable; skipped (removed, or no Read Message History permission)",
                        extra={"channel": channel_id, "status": exc.status, "code": exc.code},
                    )
                    return None
                wait = exc.retry_after if exc.status == 429 and exc.retry_after is not None else 2.0**attempt
                log.warning("channel history failed; retrying", extra={"channel": channel_id, "status": exc.status})
            except DiscordUnreachable:
                wait = 2.0**attempt
                log.warning("Discord unreachable during backfill; retrying", extra={"channel": channel_id})
            await asyncio.sleep(min(wait, LONGEST_BACKFILL_WAIT_SECONDS))
        log.error("backfill of a channel gave up; the next new session tries again", extra={"channel": channel_id})
        return None

    def _set_states(self, state: dict[str, str]) -> None:
        for key, value in state.items():
            self.inbox.spool.set_state(key, value)

    @staticmethod
    def _log_spooled(message: dict[str, Any], new: bool, source: str) -> None:
        log.info(
            "discord message spooled" if new else "discord message seen again",
            extra={
                "key": message["external_message_id"],
                "chat": message["external_chat_id"],
                "event_type": message.get("event_type", "message"),
                "source": source,
            },
        )
