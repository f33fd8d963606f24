"""The one HTTP client for URLs a tenant sets (webhooks, container connector URLs): pinned to checked addresses.

`build_outbound_client(policy)` returns an `httpx.Client` whose TCP connections are opened by
`PinnedNetworkBackend`: for each new connection it resolves the URL's host once (the policy's resolver,
else the system's), refuses unless every address is allowed (`chatbox.domain.addresses.resolve_checked`),
and connects to one of exactly those addresses. httpx keeps the URL as written, so the Host header, the
TLS SNI and the certificate's host-name check all use the original host name; and no second resolution
happens, so a DNS answer that changes between check and connect (DNS rebinding) is never used. Pooled
keep-alive connections were all opened that way.

The client follows no redirects (a 3xx is the answer, which callers treat as a failure) and reads no
proxy or certificate settings from the environment (`trust_env=False`).

Example:
    ```python
    client = build_outbound_client(AddressPolicy(), timeout=10.0)
    try:
        response = client.post(url, content=body)
    except TargetRefusedError as exc:  # never connected
        ...
    ```
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from chatbox.adapters.system_resolver import system_resolver
from chatbox.domain.addresses import AddressPolicy, Resolver, parse_target_url, resolve_checked


class PinnedNetworkBackend(httpcore.SyncBackend):
    """httpcore's socket backend, dialing only addresses the policy allowed for the requested host."""

    def __init__(self, policy: AddressPolicy, resolve: Resolver) -> None:
        self.policy = policy
        self.resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve_checked(host, port, self.policy, self.resolve)  # TargetRefusedError passes through
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                # An address literal: the socket layer does no lookup of its own.
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # resolve_checked returns at least one address
        raise failure


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool that dials through `PinnedNetworkBackend`.

    httpx offers no public way to pass a network backend, and `HTTPTransport.__init__` does nothing but
    build its pool: the pool it built is replaced by the same pool with the pinned backend. Requests are
    translated by httpx's own `handle_request`, errors mapped by its own table (TargetRefusedError, not
    an httpcore error, passes through unchanged).
    """

    def __init__(
        self, policy: AddressPolicy, *, resolve: Resolver, ssl_context: ssl.SSLContext, limits: httpx.Limits
    ) -> None:
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedNetworkBackend(policy, resolve),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        parse_target_url(str(request.url), field="URL")  # http(s) only, no user:pass@, a valid host
        return super().handle_request(request)


def build_outbound_client(
    policy: AddressPolicy,
    *,
    timeout: float,
    verify: ssl.SSLContext | None = None,
    limits: httpx.Limits | None = None,
) -> httpx.Client:
    """The client every request to a tenant-set URL goes through (see the module docstring).

    Args:
        policy: what may be reached; its `resolve` (else `system_resolver`) resolves host names.
        timeout: seconds for each of connect, write and read.
        verify: the TLS context (default: the system's trust store via certifi, host names checked).

    Requests raise `TargetRefusedError` when the target is refused (nothing was sent), and httpx's own
    errors otherwise (`httpx.ConnectError` when the name does not resolve).
    """
    ssl_context = verify if verify is not None else httpx.create_ssl_context(trust_env=False)
    transport = PinnedTransport(
        policy,
        resolve=policy.resolve or system_resolver,
        ssl_context=ssl_context,
        limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)
