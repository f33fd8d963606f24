"""signal-cli's HTTP daemon (`signal-cli -a ACCOUNT daemon --http HOST:PORT`): JSON-RPC, SSE events, check.

- `POST /api/v1/rpc`: one JSON-RPC 2.0 request; errors come back as `{"error": {"code", "message", "data"}}`.
- `GET /api/v1/events`: Server-Sent Events, `id:<daemon start>-<seq>`, `event:receive`, `data:<params JSON>`;
  the daemon keeps its last 1000 events and replays those after a `Last-Event-ID` it knows (all of them
  when it does not, e.g. after it restarted).
- `GET /api/v1/check`: 200 while the daemon runs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

RPC_TIMEOUT_SECONDS = 30.0
# No event for this long: the connection is presumed dead (the daemon sends keep-alive comments meanwhile).
EVENTS_IDLE_SECONDS = 300.0
MAX_EVENT_BYTES = 8 << 20


class SignalCliUnreachable(Exception):
    """The daemon did not answer, or answered something that is not JSON-RPC. `left`: the request may have
    reached the daemon (not a failure to connect), so a `send` may have gone out."""

    def __init__(self, message: str, *, left: bool = True) -> None:
        super().__init__(message)
        self.left = left


class RpcError(Exception):
    """signal-cli answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any) -> None:
        super().__init__(f"signal-cli error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True)
class ServerSentEvent:
    id: str | None
    event: str
    data: str


class SignalCli:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session
        self._ids = itertools.count(1)

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """The `result` of `method`; raises `RpcError` or `SignalCliUnreachable`."""
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": next(self._ids)}
        try:
            async with self._session.post(
                f"{self.url}/api/v1/rpc", json=request, timeout=aiohttp.ClientTimeout(total=RPC_TIMEOUT_SECONDS)
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            left = not isinstance(exc, aiohttp.ClientConnectorError)
            raise SignalCliUnreachable(f"signal-cli cannot be reached: {type(exc).__name__}", left=left) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise SignalCliUnreachable(f"signal-cli answered {status} without JSON") from None
        if not isinstance(answer, dict):
            raise SignalCliUnreachable(f"signal-cli answered {status} with no JSON-RPC object")
        error = answer.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            raise RpcError(
                code if isinstance(code, int) else -32603, str(error.get("message") or "")[:500], error.get("data")
            )
        if status != 200 or "result" not in answer:
            raise SignalCliUnreachable(f"signal-cli answered {status} with no result")
        return answer["result"]

    async def check(self) -> bool:
        try:
            async with self._session.get(
                f"{self.url}/api/v1/check", timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def events(self, last_event_id: str | None) -> AsyncIterator[ServerSentEvent]:
        """The event stream from after `last_event_id`, until the connection ends (raises on errors)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=EVENTS_IDLE_SECONDS)
        async with self._session.get(
            f"{self.url}/api/v1/events", headers=headers, timeout=timeout, read_bufsize=1 << 16
        ) as response:
            if response.status != 200:
                raise SignalCliUnreachable(f"signal-cli answered {response.status} for the event stream")
            parser = SseParser()
            async for line in _lines(response.content):
                event = parser.feed(line)
                if event is not None:
                    yield event


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[str]:
    buffer = b""
    async for chunk in stream.iter_any():
        buffer += chunk
        if len(buffer) > MAX_EVENT_BYTES:
            raise SignalCliUnreachable("an event stream line exceeds the size limit")
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")


class SseParser:
    """The WHATWG event-stream format, one line at a time: `field:value` lines, a blank line ends an event."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = ""
        self._data: list[str] = []
        self._has_data = False

    def feed(self, line: str) -> ServerSentEvent | None:
        if line == "":
            if not self._has_data:
                self._event = ""
                return None
            event = ServerSentEvent(self._id, self._event or "message", "\n".join(self._data))
            self._event, self._data, self._has_data = "", [], False
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id" and "\x00" not in value:
            self._id = value
        elif field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
            self._has_data = True
        return None
