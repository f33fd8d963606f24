"""The echo platform's long poll, built like Telegram's `getUpdates`: `GET {api_url}/updates?offset=N` answers
`{"updates": [...]}` with every update numbered N or more; asking with a higher offset confirms the earlier ones."""

from __future__ import annotations

import threading

import httpx

from chatbox.domain.errors import PlatformRefusedError
from chatbox.ports.connector import ConnectionContext
from chatbox.ports.live import InboundSink
from tests.platforms.echo.translate import to_inbound


class EchoLiveSource:
    def __init__(self, api_url: str, *, pause: float = 0.05) -> None:
        self.api_url = api_url.rstrip("/")
        self.pause = pause

    def run(self, ctx: ConnectionContext, sink: InboundSink, stop: threading.Event) -> None:
        offset = int(sink.cursor() or "0")
        headers = {"authorization": f"Bearer {ctx.secrets['api_key']}"}
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while not stop.is_set():
                try:
                    answer = client.get(f"{self.api_url}/updates", params={"offset": offset}, headers=headers)
                except httpx.HTTPError:
                    stop.wait(self.pause)
                    continue
                if answer.status_code == 401:
                    raise PlatformRefusedError("echo refused secrets.api_key")
                updates = answer.json()["updates"]
                if updates:
                    sink.accept([to_inbound(update) for update in updates])
                    offset = max(int(update["update"]) for update in updates) + 1
                    sink.save_cursor(str(offset))
                stop.wait(self.pause)
