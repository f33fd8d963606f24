"""The webhook sender port: how the delivery service POSTs a signed body to a mailbox's receiver.

Implemented by `chatbox.adapters.http_webhook.WebhookClient` (httpx, address policy, no redirects).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PostResult:
    """One attempt's outcome: the HTTP status (None when no response came), an error text, Retry-After seconds."""

    status: int | None
    error: str | None
    retry_after: float | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender(Protocol):
    """POSTs one webhook. Never raises for the receiver's failures: they come back as a PostResult."""

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostResult: ...

    def close(self) -> None: ...
