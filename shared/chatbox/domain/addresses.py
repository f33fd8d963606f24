"""The address policy: where a URL a tenant sets (a webhook, a container connector's URL) may lead (SSRF).

One policy for every outbound URL a tenant can set. This module is its pure half:

- `parse_target_url` reads a URL the way a resolver would: `http`/`https` only, no `user:pass@`, and a
  host normalised (lower case, one trailing dot dropped, IDNA), with IPv4 in any spelling `inet_aton`
  and the WHATWG URL standard accept (`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`, `0`) read as
  the address it means;
- `classify_address` says what an address is (public, loopback, private, link-local, ...); IPv6 forms
  that embed an IPv4 address (IPv4-mapped and -compatible, NAT64, 6to4, Teredo) are a kind of their own,
  never connected to;
- `AddressPolicy` says which kinds a deployment connects to, plus the operator's allowlist
  (`OperatorAllowlist`, container connectors only: a tenant-set URL never widens it);
- `resolve_checked` resolves a host through an injected resolver and refuses unless every address is
  allowed; `check_url` is the configuration-time check (static, then resolved when the name resolves).

The adapter half (`chatbox.adapters.outbound_http`) connects to exactly the addresses `resolve_checked`
returned, so what was checked is what is reached.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from chatbox.domain.errors import TargetRefusedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses the host resolves to; raises OSError (socket.gaierror) when it does not resolve.
Resolver = Callable[[str, int], Sequence[IPAddress]]

_SCHEMES = {"http": 80, "https": 443}
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_IPV4_NUMBER = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
# Characters no well-formed URL carries and that parsers disagree about (whitespace, controls, backslash).
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")


class AddressKind(StrEnum):
    """What an address is, for the policy."""

    public = "public"
    loopback = "loopback"
    # RFC 1918, unique local, shared (CGNAT), benchmarking, documentation and reserved ranges.
    private = "private"
    # 169.254/16 (where cloud metadata lives) and fe80::/10: never connected to unless the operator allowlists it.
    link_local = "link-local"
    # 0.0.0.0/8 and ::, which a connect() reaches as this very host.
    unspecified = "unspecified"
    multicast = "multicast or broadcast"
    # IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo: refused whatever IPv4 they carry.
    embedded_ipv4 = "IPv6-embedded IPv4"


def _v4(network: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(network)


def _v6(network: str) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(network)


# First match wins (IANA special-purpose registries), so the narrower ranges come first.
_IPV4_RANGES: tuple[tuple[ipaddress.IPv4Network, AddressKind], ...] = (
    (_v4("0.0.0.0/8"), AddressKind.unspecified),
    (_v4("127.0.0.0/8"), AddressKind.loopback),
    (_v4("169.254.0.0/16"), AddressKind.link_local),
    (_v4("224.0.0.0/4"), AddressKind.multicast),
    (_v4("255.255.255.255/32"), AddressKind.multicast),
    (_v4("10.0.0.0/8"), AddressKind.private),
    (_v4("100.64.0.0/10"), AddressKind.private),
    (_v4("172.16.0.0/12"), AddressKind.private),
    (_v4("192.0.0.0/24"), AddressKind.private),
    (_v4("192.0.2.0/24"), AddressKind.private),
    (_v4("192.88.99.0/24"), AddressKind.private),
    (_v4("192.168.0.0/16"), AddressKind.private),
    (_v4("198.18.0.0/15"), AddressKind.private),
    (_v4("198.51.100.0/24"), AddressKind.private),
    (_v4("203.0.113.0/24"), AddressKind.private),
    (_v4("240.0.0.0/4"), AddressKind.private),
)
_IPV6_RANGES: tuple[tuple[ipaddress.IPv6Network, AddressKind], ...] = (
    (_v6("::/128"), AddressKind.unspecified),
    (_v6("::1/128"), AddressKind.loopback),
    (_v6("::ffff:0:0/96"), AddressKind.embedded_ipv4),  # IPv4-mapped
    (_v6("::ffff:0:0:0/96"), AddressKind.embedded_ipv4),  # IPv4-translated (SIIT)
    (_v6("::/96"), AddressKind.embedded_ipv4),  # IPv4-compatible (deprecated)
    (_v6("64:ff9b::/96"), AddressKind.embedded_ipv4),  # NAT64
    (_v6("64:ff9b:1::/48"), AddressKind.embedded_ipv4),  # local-use NAT64
    (_v6("2002::/16"), AddressKind.embedded_ipv4),  # 6to4
    (_v6("2001::/32"), AddressKind.embedded_ipv4),  # Teredo
    (_v6("fe80::/10"), AddressKind.link_local),
    (_v6("ff00::/8"), AddressKind.multicast),
    (_v6("2001::/23"), AddressKind.private),  # IETF protocol assignments
    (_v6("2001:db8::/32"), AddressKind.private),  # documentation
    (_v6("3fff::/20"), AddressKind.private),  # documentation
)
# Only global unicast is public; everything else in IPv6 (unique local fc00::/7, site-local, reserved) is not.
_IPV6_GLOBAL_UNICAST = _v6("2000::/3")


def classify_address(address: IPAddress) -> AddressKind:
    """What `address` is. Pure and independent of the Python version's `ipaddress` tables."""
    if isinstance(address, ipaddress.IPv4Address):
        for network, kind in _IPV4_RANGES:
            if address in network:
                return kind
        return AddressKind.public
    address = ipaddress.IPv6Address(int(address))  # without a %zone, which network membership ignores anyway
    for network6, kind in _IPV6_RANGES:
        if address in network6:
            return kind
    return AddressKind.public if address in _IPV6_GLOBAL_UNICAST else AddressKind.private


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host spells in any form `inet_aton` and the WHATWG URL standard accept, or None
    when the host is a name. `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1` all mean 127.0.0.1; `0` is
    0.0.0.0.

    Raises:
        ValueError: the host ends in a number (so every resolver reads it as an address) but is not a valid one.
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or not _IPV4_NUMBER.match(parts[-1]):
        return None
    if len(parts) > 4:
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    numbers = []
    for part in parts:
        if not _IPV4_NUMBER.match(part):
            raise ValueError(f"{host!r} is not a valid IPv4 address")
        if part.startswith("0x"):
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                raise ValueError(f"{host!r} is not a valid IPv4 address")
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def normalise_host(host: str) -> tuple[str, IPAddress | None]:
    """A URL host (without brackets) as `(canonical text, address when it is an address literal)`.

    Names come back lower case, IDNA-encoded, without one trailing dot; address literals in their
    canonical spelling (`127.1` -> `127.0.0.1`, `::FFFF:7f00:1` -> `::ffff:7f00:1`).

    Raises:
        ValueError: not a valid host (a bad numeric address, an empty label, characters no host name has).
    """
    text = host.strip().lower()
    if ":" in text:
        return _canonical(ipaddress.IPv6Address(text))
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    v4 = parse_ipv4(text)
    if v4 is not None:
        return _canonical(v4)
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{host!r} is not a valid host name") from exc
    if not text or len(text) > 253 or not all(_LABEL.match(label) for label in text.split(".")):
        raise ValueError(f"{host!r} is not a valid host name")
    return text, None


def _canonical(address: IPAddress) -> tuple[str, IPAddress]:
    return str(address), address


@dataclass(frozen=True)
class OperatorAllowlist:
    """Hosts and networks the operator lets container connectors reach whatever their addresses
    (`CHATBOX_CONNECTOR_ALLOWED_HOSTS`): comma-separated `host`, `host:port`, `[v6]:port`, an address, or a CIDR.

    A `host[:port]` entry admits a URL whose host is exactly that name (and port); every address the name
    resolves to is then reached. A CIDR (or a bare address) admits any address in it, whatever the name.
    """

    hosts: frozenset[tuple[str, int | None]] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> OperatorAllowlist:
        """Raises ValueError naming the first entry that is not a host, host:port, address or CIDR."""
        hosts: set[tuple[str, int | None]] = set()
        networks: list[IPNetwork] = []
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                if "/" in entry:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                    continue
                host, port = _split_host_port(entry)
                name, address = normalise_host(host)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not a host, host:port, address or CIDR ({exc})") from exc
            if address is not None and port is None:
                networks.append(ipaddress.ip_network(address))
            else:
                hosts.add((name, port))
        return cls(frozenset(hosts), tuple(networks))

    def admits(self, address: IPAddress, host: str | None = None, port: int | None = None) -> bool:
        """Whether the operator allowed reaching `address` as `host:port` (host already normalised)."""
        if host is not None and ((host, None) in self.hosts or (host, port) in self.hosts):
            return True
        plain = ipaddress.ip_address(int(address)) if isinstance(address, ipaddress.IPv6Address) else address
        return any(plain.version == network.version and plain in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.hosts or self.networks)


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("expected [address] or [address]:port")
        return host, _port(rest[1:]) if rest else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, _port(port)
    return entry, None  # a name, an IPv4 address, or a bare IPv6 address


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"port {text} out of range")
    return port


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses outbound URLs may reach beyond public ones.

    Args:
        allow_private: private, reserved and loopback addresses too (CHATBOX_ALLOW_PRIVATE_WEBHOOKS); never
            link-local, unspecified, multicast or IPv6-embedded IPv4.
        allow_loopback: loopback addresses too (CHATBOX_ALLOW_LOOPBACK_WEBHOOKS; `chatbox dev`'s default).
        operator_allowlist: what the operator admits whatever its address (container connectors only).
        resolve: resolves host names for the configuration-time check and for connecting
            (`chatbox.adapters.outbound_http`, the system resolver when None). Tests inject their own.
    """

    allow_private: bool = False
    allow_loopback: bool = False
    operator_allowlist: OperatorAllowlist = field(default_factory=OperatorAllowlist)
    resolve: Resolver | None = field(default=None, compare=False, repr=False)

    def refused_kind(self, address: IPAddress, host: str | None = None, port: int | None = None) -> AddressKind | None:
        """None when the policy connects to `address` (reached as `host:port`); else the kind it refuses."""
        if self.operator_allowlist.admits(address, host, port):
            return None
        kind = classify_address(address)
        if kind is AddressKind.public:
            return None
        if kind is AddressKind.loopback and (self.allow_loopback or self.allow_private):
            return None
        if kind is AddressKind.private and self.allow_private:
            return None
        return kind

    def permits(self, address: IPAddress, host: str | None = None, port: int | None = None) -> bool:
        return self.refused_kind(address, host, port) is None


@dataclass(frozen=True)
class TargetUrl:
    """A URL as the policy reads it."""

    scheme: str
    host: str  # normalised (see normalise_host)
    port: int
    address: IPAddress | None  # when the host is an address literal


def parse_target_url(url: str, *, field: str = "webhook_url") -> TargetUrl:
    """Read `url` as the policy does (see the module docstring).

    Raises:
        TargetRefusedError: not http(s), a `user:pass@` part, no host, an invalid host or port.
    """
    if _UNSAFE_CHARACTERS.search(url):
        raise TargetRefusedError(f"{field} contains whitespace, control characters or a backslash")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise TargetRefusedError(f"{field} must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise TargetRefusedError(
            f"{field} must not carry a user name or password (user:pass@host); use a credential reference"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise TargetRefusedError(f"{field} has an invalid port") from exc
    if port == 0:
        raise TargetRefusedError(f"{field} has an invalid port")
    if not parts.hostname:
        raise TargetRefusedError(f"{field} has no host")
    try:
        host, address = normalise_host(parts.hostname)
    except ValueError as exc:
        raise TargetRefusedError(f"{field}: {exc}") from exc
    return TargetUrl(scheme, host, port or _SCHEMES[scheme], address)


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


_HINTS = {
    AddressKind.loopback: "; an operator can allow loopback targets (CHATBOX_ALLOW_LOOPBACK_WEBHOOKS=1) or admit "
    "a connector's host (CHATBOX_CONNECTOR_ALLOWED_HOSTS)",
    AddressKind.private: "; an operator can allow private targets (CHATBOX_ALLOW_PRIVATE_WEBHOOKS=1) or admit "
    "a connector's host (CHATBOX_CONNECTOR_ALLOWED_HOSTS)",
}


def _refuse(field: str, host: str, address: IPAddress, kind: AddressKind) -> TargetRefusedError:
    where = str(address) if host == str(address) else f"{host} ({address})"
    return TargetRefusedError(
        f"{field} points at {where}, a {kind.value} address: refused (SSRF protection){_HINTS.get(kind, '')}"
    )


def check_addresses(
    host: str, port: int, addresses: Sequence[IPAddress], policy: AddressPolicy, *, field: str = "webhook_url"
) -> None:
    """TargetRefusedError unless the policy allows every one of `addresses` (what `host` resolved to)."""
    for address in addresses:
        kind = policy.refused_kind(address, host, port)
        if kind is not None:
            raise _refuse(field, host, address, kind)


def check_url_statically(url: str, policy: AddressPolicy, *, field: str = "webhook_url") -> TargetUrl:
    """Check what can be checked without resolving: the URL's form, an address literal, `localhost`.

    Raises:
        TargetRefusedError (an InvalidInputError): see `parse_target_url`, or a refused address.
    """
    target = parse_target_url(url, field=field)
    if target.address is not None:
        check_addresses(target.host, target.port, [target.address], policy, field=field)
    elif _is_localhost(target.host) and not policy.operator_allowlist.admits(
        ipaddress.IPv4Address("127.0.0.1"), target.host, target.port
    ):
        # RFC 6761: localhost names are loopback whatever a resolver says.
        check_addresses(target.host, target.port, [ipaddress.IPv4Address("127.0.0.1")], policy, field=field)
    return target


def resolve_checked(
    host: str, port: int, policy: AddressPolicy, resolve: Resolver, *, field: str = "URL"
) -> list[IPAddress]:
    """The addresses to connect to for `host:port`: the literal, or what `resolve` answers, each one allowed.

    Raises:
        TargetRefusedError: an invalid host, or any address refused (one refused answer refuses them all).
        OSError: the name does not resolve (from `resolve`), or resolves to nothing.
    """
    try:
        name, literal = normalise_host(host)
    except ValueError as exc:
        raise TargetRefusedError(f"{field}: {exc}") from exc
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        addresses = list(dict.fromkeys(resolve(name, port)))
        if not addresses:
            raise OSError(f"{name} resolves to no address")
    check_addresses(name, port, addresses, policy, field=field)
    return addresses


def check_url(url: str, policy: AddressPolicy, *, field: str = "webhook_url") -> TargetUrl:
    """The configuration-time check of a tenant-set URL: `check_url_statically`, then, when the policy has a
    resolver, every address the host resolves to now. A name that does not resolve yet passes: the check
    made when connecting (`chatbox.adapters.outbound_http`) is the one that decides.

    Raises:
        TargetRefusedError (an InvalidInputError): the URL or an address it resolves to is refused.
    """
    target = check_url_statically(url, policy, field=field)
    if target.address is None and policy.resolve is not None:
        try:
            resolve_checked(target.host, target.port, policy, policy.resolve, field=field)
        except OSError:
            pass
    return target


# Zones no public resolver answers (RFC 6761 and 6762, RFC 8375, and the habits of home and cloud networks).
_LOCAL_ZONES = ("localhost", "local", "internal", "home.arpa", "lan")


def is_public_https_url(url: str) -> bool:
    """Whether a platform on the internet can push to `url`: https, on a public address or a dotted name
    outside the local-only zones. Static (a name is not resolved), for choosing webhook or live receive.

    Example:
        ```python
        is_public_https_url("https://chatbox.example.com/v1/ingest/telegram/conn_1")  # True
        is_public_https_url("http://127.0.0.1:8000/v1/ingest/telegram/conn_1")  # False
        ```
    """
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        if parts.scheme != "https" or not hostname:
            return False
        host, address = normalise_host(hostname)
    except ValueError:
        return False
    if address is not None:
        return classify_address(address) is AddressKind.public
    return "." in host and not any(host == zone or host.endswith("." + zone) for zone in _LOCAL_ZONES)
