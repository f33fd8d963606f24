"""The HTTP webhook sender: the pinned outbound client (`chatbox.adapters.outbound_http`), no redirects, a timeout."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import httpx

from chatbox.adapters.outbound_http import build_outbound_client
from chatbox.domain.addresses import AddressPolicy, check_url_statically
from chatbox.domain.errors import TargetRefusedError
from chatbox.ports.webhook_sender import PostResult


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class WebhookClient:
    """One pooled HTTP client per process, connecting only to addresses the policy allows (a redirect is a
    failed attempt, not followed)."""

    def __init__(self, policy: AddressPolicy, timeout: float = 15.0) -> None:
        self.policy = policy
        self._client = build_outbound_client(policy, timeout=timeout)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostResult:
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            check_url_statically(url, self.policy)
            response = self._client.post(url, content=body, headers=headers)
        except TargetRefusedError as exc:  # refused before connecting: the receiver got nothing
            return PostResult(None, exc.message, None, elapsed())
        except httpx.TimeoutException:
            return PostResult(None, "timed out", None, elapsed())
        except httpx.HTTPError as exc:
            return PostResult(None, f"connection error: {type(exc).__name__}: {exc}", None, elapsed())
        retry_after = None
        if response.status_code in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        if 300 <= response.status_code < 400:
            error = f"HTTP {response.status_code} (redirects are not followed: set webhook_url to the final URL)"
        return PostResult(response.status_code, error, retry_after, elapsed())

    def close(self) -> None:
        self._client.close()
