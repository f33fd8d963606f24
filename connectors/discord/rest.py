"""The few Discord REST calls the program makes itself (sends, channel history), over one aiohttp session.

discord.py holds the gateway; these calls stay outside its HTTP client so that a 429 is ours to answer
(the contract wants it reported to chatbox with `retry_after`, while discord.py would sleep through it)
and so the send path never shares a rate-limit lock with the gateway's own requests.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

log = logging.getLogger("connectors.discord.rest")

REQUEST_TIMEOUT_SECONDS = 8.0
# Discord asks bots to name themselves: "DiscordBot ($url, $versionNumber)".
USER_AGENT = "DiscordBot (https://github.com/chatbox/chatbox, 0.1) chatbox-discord-connector"


class DiscordHttpError(Exception):
    """A non-2xx answer: the HTTP status, Discord's JSON error code and message, and for a 429 how long to wait."""

    def __init__(self, status: int, code: int | None, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"Discord answered {status}: {message}" + (f" (code {code})" if code is not None else ""))
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class DiscordUnreachable(Exception):
    """No answer from Discord (refused, reset, timeout). `left`: the request may have reached Discord (it was not
    a failure to connect), so a create may have happened."""

    def __init__(self, message: str, *, left: bool) -> None:
        super().__init__(message)
        self.left = left


class DiscordRest:
    def __init__(self, api_url: str, token: str, session: aiohttp.ClientSession) -> None:
        self._root = api_url.rstrip("/")
        self._headers = {"Authorization": f"Bot {token}", "User-Agent": USER_AGENT}
        self._session = session

    async def create_message(self, channel_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        data = await self._request("POST", f"/channels/{channel_id}/messages", json=payload)
        if not isinstance(data, dict):
            raise DiscordHttpError(502, None, "the answer to a send is not a message object")
        return data

    async def create_message_with_file(
        self, channel_id: str, payload: dict[str, Any], file: tuple[str, bytes, str]
    ) -> dict[str, Any]:
        """A message with one uploaded file: multipart `payload_json` + `files[0]` (Discord's upload format)."""
        filename, data, content_type = file
        form = aiohttp.FormData()
        form.add_field("payload_json", json.dumps(payload), content_type="application/json")
        form.add_field("files[0]", data, filename=filename, content_type=content_type)
        answer = await self._request("POST", f"/channels/{channel_id}/messages", data=form)
        if not isinstance(answer, dict):
            raise DiscordHttpError(502, None, "the answer to an upload is not a message object")
        return answer

    async def messages_after(self, channel_id: str, after: str, limit: int = 100) -> list[dict[str, Any]]:
        """Up to `limit` messages of the channel newer than `after`, oldest first."""
        data = await self._request("GET", f"/channels/{channel_id}/messages", params={"after": after, "limit": limit})
        if not isinstance(data, list):
            raise DiscordHttpError(502, None, "the answer to a history request is not a list")
        messages = [m for m in data if isinstance(m, dict) and str(m.get("id", "")).isdigit()]
        return sorted(messages, key=lambda m: int(m["id"]))

    async def act(self, method: str, path: str, payload: dict[str, Any] | None = None) -> None:
        """A call whose answer chatbox does not need (an edit, a delete, a reaction, typing: often 204)."""
        await self._request(method, path, **({"json": payload} if payload is not None else {}))

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        try:
            async with self._session.request(
                method, self._root + path, headers=self._headers, timeout=timeout, allow_redirects=False, **kwargs
            ) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    data = None
                if 200 <= response.status < 300:
                    return data
                raise _error_of(response.status, response.headers, data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            left = not isinstance(exc, aiohttp.ClientConnectorError)
            raise DiscordUnreachable(f"Discord could not be reached ({type(exc).__name__})", left=left) from None


def _error_of(status: int, headers: Any, data: Any) -> DiscordHttpError:
    body = data if isinstance(data, dict) else {}
    code = body.get("code") if isinstance(body.get("code"), int) else None
    text = body.get("message")
    message = text if isinstance(text, str) else f"HTTP {status}"
    retry_after = None
    if status == 429:
        retry_after = _seconds(body.get("retry_after"))
        if retry_after is None:
            retry_after = _seconds(headers.get("Retry-After"))
    return DiscordHttpError(status, code, message[:300], retry_after)


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds < 86_400 else None
