"""Outbound: a chatbox send request (connectors/CONTRACT.md) as Discord `POST /channels/{id}/messages` calls.

- Text longer than 2000 characters goes as several messages, split at a line break or a space where
  one is near the limit; the first part carries the reply (`message_reference`) and its id is returned.
- `reply_to` is an `external_message_id` of the chat: a snowflake, or an edit's/deletion's id
  (`"{id}:edit:…"`, `"{id}:delete"`), which name the same message. A reply to a message that is gone
  is sent as a plain message (`fail_if_not_exists: false`) rather than refused.
- Options: `silent` → the SUPPRESS_NOTIFICATIONS flag; unknown options are ignored.
- Mentions in the agent's text notify the users it names, never @everyone, @here or a role.
- A 429 Discord asks to wait at most `SHORT_WAIT_SECONDS` for is waited out and retried once (chatbox
  gives a send 10 s); a longer one is `RateLimited(retry_after)`, which chatbox shows the agent.
- Idempotent: each part carries a `nonce` derived from the request's `request_id` and the part's index, with
  `enforce_nonce: true`, so Discord answers a second create with the same nonce (within a few minutes) with
  the message it already made. A create that left and got no answer is therefore asked again once with the
  same nonce; the parts in `parts_sent` are skipped; a retry of an unanswered attempt (`uncertain_since`) is
  safe while Discord still remembers the nonce, and `OutcomeUnknown` after that.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from typing import Any
from urllib.parse import quote

from connectors.discord.rest import DiscordHttpError, DiscordRest, DiscordUnreachable
from connectors.relay.server import (
    ActionHandler,
    ActionRequest,
    OutcomeUnknown,
    PlatformDown,
    RateLimited,
    SendError,
    SendRefused,
    SendRequest,
    Sent,
)

log = logging.getLogger("connectors.discord.send")

MAX_MESSAGE_CHARS = 2000
SUPPRESS_NOTIFICATIONS = 1 << 12
SHORT_WAIT_SECONDS = 2.0
_SNOWFLAKE = re.compile(r"\d{15,21}")
NONCE_CHARS = 25  # Discord's limit for a string nonce
# Discord checks an enforced nonce "in the past few minutes": a retry later than this could post a second message.
NONCE_MEMORY_SECONDS = 120.0
_REFUSALS = {400: "refused", 403: "forbidden", 404: "unknown_chat", 413: "too_large", 422: "refused"}


def split_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """`text` in parts of at most `limit` UTF-16 code units (what Discord counts), cut at a line break or a
    space in the last fifth of a part when there is one, never inside a surrogate pair."""
    parts: list[str] = []
    rest = text
    while _utf16_len(rest) > limit:
        cut = _longest_prefix(rest, limit)
        window = rest[:cut]
        floor = cut * 4 // 5
        for separator in ("\n", " "):
            at = window.rfind(separator)
            if at >= floor:
                cut = at + 1
                break
        part = rest[:cut].rstrip() or rest[:cut]
        parts.append(part)
        rest = rest[cut:].lstrip("\n")
    if rest.strip() or not parts:
        parts.append(rest)
    return parts


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _longest_prefix(text: str, limit: int) -> int:
    """How many code points of `text` fit in `limit` UTF-16 units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def referenced_message(reply_to: str | None) -> str | None:
    """The snowflake a chatbox reference names (a message, an edit or a deletion of it), or None."""
    if not reply_to:
        return None
    head = reply_to.split(":", 1)[0]
    return head if _SNOWFLAKE.fullmatch(head) else None


def part_nonce(request_id: str, index: int) -> str:
    """The nonce of part `index` of a send: the same on every retry of that send, distinct per part."""
    return hashlib.sha256(f"{request_id}:{index}".encode()).hexdigest()[:NONCE_CHARS]


def message_payloads(request: SendRequest) -> list[dict[str, Any]]:
    """The JSON bodies to post, in order."""
    flags = SUPPRESS_NOTIFICATIONS if request.options.get("silent") is True else 0
    reply_to = referenced_message(request.reply_to)
    payloads: list[dict[str, Any]] = []
    for index, part in enumerate(split_text(request.text)):
        payload: dict[str, Any] = {
            "content": part,
            "allowed_mentions": {"parse": ["users"], "replied_user": True},
            "nonce": part_nonce(request.request_id, index),
            "enforce_nonce": True,
        }
        if flags:
            payload["flags"] = flags
        if index == 0 and reply_to is not None:
            payload["message_reference"] = {"message_id": reply_to, "fail_if_not_exists": False}
        payloads.append(payload)
    return payloads


async def send_message(rest: DiscordRest, request: SendRequest) -> Sent:
    """Post the request's text to its channel; the snowflakes of the messages posted, the first one first.

    Raises:
        SendRefused: Discord refused the channel or the message (unknown, no permission, invalid).
        RateLimited: Discord asked to wait longer than a send can.
        PlatformDown: Discord cannot be reached, or refused the bot's token.
        OutcomeUnknown: a create got no answer twice, or the earlier unanswered attempt is older than Discord's
            memory of nonces.
    """
    if not _SNOWFLAKE.fullmatch(request.chat_id):
        raise SendRefused(404, "unknown_chat", "a Discord chat id is a channel's snowflake (digits only)")
    if not request.text.strip():
        raise SendRefused(400, "empty", "Discord refuses an empty message: send some text")
    payloads = message_payloads(request)
    ids = list(request.parts_sent[: len(payloads)])
    if (
        request.uncertain_since is not None
        and len(ids) < len(payloads)
        and time.time() - request.uncertain_since > NONCE_MEMORY_SECONDS
    ):
        raise _with_parts(
            OutcomeUnknown(
                "an earlier attempt at this message got no answer, too long ago for Discord to still recognise its "
                "nonce: whether it was posted is unknown - check the channel before resending"
            ),
            ids,
            len(payloads),
        )
    for index in range(len(ids), len(payloads)):
        try:
            message = await _post_once_more_after_a_short_wait(rest, request.chat_id, payloads[index])
        except SendError as exc:
            if ids:
                exc.message = (
                    f"{exc.message} (after {len(ids)} of {len(payloads)} parts were sent, the first as {ids[0]})"
                )
            raise _with_parts(exc, ids, len(payloads)) from None
        message_id = str(message.get("id", ""))
        if not message_id:
            raise _with_parts(PlatformDown("Discord answered the send without a message id"), ids, len(payloads))
        ids.append(message_id)
    log.info("sent to discord", extra={"channel": request.chat_id, "parts": len(payloads), "message_id": ids[0]})
    return Sent(ids[0], tuple(ids))


def _with_parts(exc: SendError, ids: list[str], total: int) -> SendError:
    exc.parts_sent = tuple(ids)
    exc.parts_total = total
    return exc


async def _post_once_more_after_a_short_wait(
    rest: DiscordRest, channel_id: str, payload: dict[str, Any]
) -> dict[str, Any]:
    unanswered = False
    for attempt in (1, 2):
        try:
            return await rest.create_message(channel_id, payload)
        except DiscordHttpError as exc:
            if exc.status == 429:
                wait = exc.retry_after if exc.retry_after is not None else 1.0
                if attempt == 1 and wait <= SHORT_WAIT_SECONDS:
                    log.info("discord rate limit: waiting once", extra={"retry_after": wait, "channel": channel_id})
                    await asyncio.sleep(wait)
                    continue
                raise RateLimited(wait, f"Discord is rate limiting sends to this channel; wait {wait:.1f} s") from None
            raise _contract_error(exc) from None
        except DiscordUnreachable as exc:
            if exc.left and attempt == 1:
                # The same nonce again: Discord answers the message it made, or makes it now if it had not.
                log.info("discord did not answer a send: asking again with its nonce", extra={"channel": channel_id})
                unanswered = True
                continue
            if exc.left or unanswered:
                raise OutcomeUnknown(
                    f"{exc}: Discord did not answer the send, twice; whether it was posted is unknown - check the "
                    "channel before resending"
                ) from None
            raise PlatformDown(str(exc)) from None
    raise AssertionError("unreachable")  # the loop returns or raises


def _contract_error(exc: DiscordHttpError) -> SendRefused | PlatformDown:
    detail = f"Discord: {exc.message}" + (f" (code {exc.code})" if exc.code is not None else "")
    if exc.status == 401:
        return PlatformDown(f"{detail}: Discord refused the bot token; check DISCORD_BOT_TOKEN")
    if exc.status in _REFUSALS:
        advice = {
            403: "; the bot lacks permission to write in this channel (Send Messages, or it was removed)",
            404: "; the channel is unknown to the bot (deleted, or the bot is not in that server)",
        }.get(exc.status, "")
        return SendRefused(exc.status, _REFUSALS[exc.status], detail + advice)
    return PlatformDown(f"{detail}; try again later")


# --- message actions (CONTRACT.md, "Message actions") ------------------------------------------------------------


def _ids(request: ActionRequest) -> tuple[str, str]:
    """The channel and the message snowflake (an edit's or deletion's id names the same message)."""
    message = (request.message_id or "").split(":", 1)[0]
    if not _SNOWFLAKE.fullmatch(request.chat_id):
        raise SendRefused(404, "unknown_chat", "a Discord chat id is a channel's snowflake (digits only)")
    if request.message_id is not None and not _SNOWFLAKE.fullmatch(message):
        raise SendRefused(422, "invalid_message_id", "a Discord message id is a snowflake (digits only)")
    return request.chat_id, message


def reaction_path(emoji: str) -> str:
    """The emoji as Discord's reaction routes spell it: the character URL-encoded, or `name:id` for a custom one."""
    return quote(emoji.strip().strip(":") if _CUSTOM_EMOJI.fullmatch(emoji.strip()) else emoji.strip(), safe=":")


_CUSTOM_EMOJI = re.compile(r":?[A-Za-z0-9_~]{2,32}:\d{15,21}:?")


async def _act(rest: DiscordRest, method: str, path: str, payload: dict[str, Any] | None = None) -> None:
    try:
        await rest.act(method, path, payload)
    except DiscordHttpError as exc:
        if exc.status == 429:
            wait = exc.retry_after if exc.retry_after is not None else 1.0
            raise RateLimited(wait, f"Discord is rate limiting this channel; wait {wait:.1f} s") from None
        raise _contract_error(exc) from None
    except DiscordUnreachable as exc:
        raise PlatformDown(str(exc)) from None


def discord_actions(rest: DiscordRest) -> dict[str, ActionHandler]:
    """PATCH / DELETE a message, PUT / DELETE the bot's reaction (`@me`), POST typing."""

    async def edit(request: ActionRequest) -> None:
        channel, message = _ids(request)
        text = request.text or ""
        if _utf16_len(text) > MAX_MESSAGE_CHARS:
            raise SendRefused(422, "too_long", f"an edited Discord message holds {MAX_MESSAGE_CHARS} characters")
        await _act(rest, "PATCH", f"/channels/{channel}/messages/{message}", {"content": text})

    async def delete(request: ActionRequest) -> None:
        channel, message = _ids(request)
        await _act(rest, "DELETE", f"/channels/{channel}/messages/{message}")

    async def react(request: ActionRequest) -> None:
        channel, message = _ids(request)
        path = f"/channels/{channel}/messages/{message}/reactions/{reaction_path(request.emoji or '')}/@me"
        await _act(rest, "DELETE" if request.remove else "PUT", path)

    async def typing(request: ActionRequest) -> None:
        channel, _ = _ids(request)
        await _act(rest, "POST", f"/channels/{channel}/typing")

    return {"edit": edit, "delete": delete, "react": react, "typing": typing}
