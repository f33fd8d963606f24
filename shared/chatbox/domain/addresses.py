"""The address policy: which hosts a tenant-set URL (webhooks, connector URLs) may point at.

Pure: the static check runs when a URL is configured; the adapters that connect (`adapters/http_webhook`)
resolve the host and apply the same policy to every address it resolves to.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from chatbox.domain.errors import InvalidInputError


@dataclass(frozen=True)
class AddressPolicy:
    """Which webhook targets are allowed beyond public addresses."""

    allow_private: bool = False
    allow_loopback: bool = False

    def permits(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_loopback:
            return self.allow_loopback or self.allow_private
        if address.is_multicast:
            return False
        # Anything not globally routable: private, link-local (cloud metadata), shared 100.64/10, reserved...
        return address.is_global or self.allow_private


def check_url_statically(url: str, policy: AddressPolicy) -> None:
    """Refuse, at configuration time, URLs whose host is literally a forbidden address or localhost."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        if not policy.permits(ipaddress.ip_address("127.0.0.1")):
            raise InvalidInputError("webhook_url points at localhost; set CHATBOX_ALLOW_PRIVATE_WEBHOOKS=1 to allow it")
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: resolved and checked at send time
    if not policy.permits(address):
        raise InvalidInputError(
            f"webhook_url points at a private address ({host}); set CHATBOX_ALLOW_PRIVATE_WEBHOOKS=1 to allow it"
        )
