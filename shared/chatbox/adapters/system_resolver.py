"""The system's host-name resolver, apart from the HTTP client so that composing a runtime does not load httpx."""

from __future__ import annotations

import ipaddress
import socket

from chatbox.domain.addresses import IPAddress


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address `getaddrinfo` gives for `host:port` over TCP, in its order; OSError when none."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
