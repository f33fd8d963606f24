"""The HTTP webhook sender: no redirects, a timeout, and a refusal to reach private addresses (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from chatbox.domain.addresses import AddressPolicy
from chatbox.ports.webhook_sender import PostResult


class TargetRefused(Exception):
    """The webhook host resolves to an address the policy forbids."""


def check_resolved(url: str, policy: AddressPolicy) -> None:
    """Resolve the host now and refuse if any address is forbidden (TargetRefused)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc.strerror}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not policy.permits(address):
            raise TargetRefused(f"{host} resolves to {address}, a private address; refused (SSRF protection)")


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
    """One pooled HTTP client per process."""

    def __init__(self, policy: AddressPolicy, timeout: float = 15.0) -> None:
        self.policy = policy
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostResult:
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            check_resolved(url, self.policy)
        except TargetRefused as exc:
            return PostResult(None, str(exc), None, elapsed())
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return PostResult(None, "timed out", None, elapsed())
        except httpx.HTTPError as exc:
            return PostResult(None, f"connection error: {type(exc).__name__}: {exc}", None, elapsed())
        retry_after = None
        if response.status_code in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return PostResult(response.status_code, error, retry_after, elapsed())

    def close(self) -> None:
        self._client.close()
