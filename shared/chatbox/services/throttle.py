"""Failed-authentication throttling: every surface that checks a secret refuses a client that keeps failing.

Only failed attempts count, in token buckets kept in memory by the process (the runtime owns one
`AuthThrottle`; nothing is shared between processes, so on Lambda each warm instance counts on its own).
A bucket holds `limit` failures and refills at `limit / window` per second; while one of the buckets an
attempt falls in is empty, the attempt is refused (429 with `Retry-After`) before any secret is checked,
which costs no database work. Two buckets guard each attempt:

- **per client and credential** (`Attempt.target`: an API key's first 12 characters, the mailbox of an
  MCP token, the connection of an inbound token or a webhook): a client retrying one wrong or revoked
  secret is slowed down without touching its other credentials;
- **per client** (bearer secrets only: API keys, MCP tokens, inbound tokens, all surfaces together):
  a client guessing across many credentials is slowed down whatever it tries.

Nothing is keyed by the credential alone: whoever guesses a key prefix or a mailbox id can exhaust only
their own buckets, never lock the owner out. What an attacker can do to a legitimate tenant is share its
address (one NAT, one proxy that is not trusted for `X-Forwarded-For`): that tenant's requests are then
refused while the shared per-client bucket is empty, valid credentials included. Webhook pushes have no
per-client bucket for that reason: they come from the platforms' own addresses, which every tenant shares
and which anyone can aim at chatbox (a Telegram bot of their own with a wrong secret); there a failure
counts only against the pair (platform address, connection).

Example:
    ```python
    throttle = AuthThrottle(ThrottlePolicy(per_client=60, per_credential=20, window_seconds=60))
    attempt = Attempt(client_address(scope.get("client")), f"api_key:{presented[:12]}")
    with throttle.guard(attempt):  # ThrottledError while refused; an AuthenticationError inside counts
        account_id = authenticate_api_key(db, presented)
    ```
"""

from __future__ import annotations

import functools
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from chatbox.domain.errors import AuthenticationError, ThrottledError

UNKNOWN_CLIENT = "unknown"
API_KEY_PREFIX_LENGTH = 12  # what `ApiKey.prefix` keeps of an issued key


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures a client may make per `window_seconds` in total (`per_client`) and against one
    credential (`per_credential`) before it is refused; 0 switches that bucket off."""

    per_client: int
    per_credential: int
    window_seconds: float


@dataclass(frozen=True)
class Attempt:
    """One authentication attempt: who makes it and which credential it targets.

    Args:
        client: the client's address as `client_address` gives it.
        target: the credential attacked, namespaced by kind (`api_key:cbk_01abcdef`, `mcp:mbx_…`,
            `inbound:conn_…`, `webhook:conn_…`).
        per_client: whether the attempt also counts in the client's own bucket (not for webhook pushes).
    """

    client: str
    target: str
    per_client: bool = True


def client_address(peer: Sequence[object] | None) -> str:
    """The key a client is counted under: its address from the ASGI `client` (uvicorn fills it from a trusted
    proxy's `X-Forwarded-For`, Mangum from API Gateway's `sourceIp`), an IPv6 address by its /64, which one
    host usually holds whole."""
    if not peer:
        return UNKNOWN_CLIENT
    return _address_key(str(peer[0]))


# A few platform and proxy addresses make most requests: parsing each one again was about 1 % of an ingest's CPU.
@functools.lru_cache(maxsize=4096)
def _address_key(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def api_key_target(presented: str) -> str:
    """The throttling target of a presented API key: its prefix, as long as the stored one."""
    return "api_key:" + presented[:API_KEY_PREFIX_LENGTH]


class AuthThrottle:
    """Counts failed authentication attempts per client and per (client, credential); thread-safe.

    Args:
        policy: the limits and their window.
        clock: monotonic seconds (tests pass their own).
        capacity: buckets kept at most; the least recently used go first (a bucket that went is full again).
    """

    def __init__(
        self, policy: ThrottlePolicy, *, clock: Callable[[], float] = time.monotonic, capacity: int = 65_536
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.capacity = capacity
        self._buckets: OrderedDict[tuple[str, ...], tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def check(self, attempt: Attempt) -> None:
        """Raise ThrottledError, with the seconds to wait, while any bucket of `attempt` is empty."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key, limit in self._buckets_of(attempt):
                tokens = self._tokens(key, limit, now)
                if tokens < 1:
                    wait = max(wait, (1 - tokens) * self.policy.window_seconds / limit)
        if wait > 0:
            retry_after = max(1, math.ceil(wait - 1e-6))  # whole seconds, without float noise adding one
            raise ThrottledError(
                f"too many failed authentication attempts from this client; retry in {retry_after} s", retry_after
            )

    def record_failure(self, attempt: Attempt) -> None:
        """Count one failed attempt in each bucket of `attempt`."""
        now = self.clock()
        with self._lock:
            for key, limit in self._buckets_of(attempt):
                self._buckets[key] = (max(0.0, self._tokens(key, limit, now) - 1), now)
                self._buckets.move_to_end(key)
            while len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)

    @contextmanager
    def guard(self, attempt: Attempt) -> Iterator[None]:
        """`check`, then run the block; an AuthenticationError raised in it counts as a failure (and propagates)."""
        self.check(attempt)
        try:
            yield
        except AuthenticationError:
            self.record_failure(attempt)
            raise

    def _buckets_of(self, attempt: Attempt) -> list[tuple[tuple[str, ...], int]]:
        buckets: list[tuple[tuple[str, ...], int]] = []
        if self.policy.per_credential > 0:
            buckets.append((("credential", attempt.client, attempt.target), self.policy.per_credential))
        if attempt.per_client and self.policy.per_client > 0:
            buckets.append((("client", attempt.client), self.policy.per_client))
        return buckets

    def _tokens(self, key: tuple[str, ...], limit: int, now: float) -> float:
        """The bucket's tokens at `now` (a missing bucket is full); call with the lock held."""
        stored = self._buckets.get(key)
        if stored is None:
            return float(limit)
        tokens, at = stored
        return min(float(limit), tokens + max(0.0, now - at) * limit / self.policy.window_seconds)
