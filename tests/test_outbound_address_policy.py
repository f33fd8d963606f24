"""One policy for every URL a tenant sets (webhooks, container connector URLs): refused before any byte is sent.

Real servers on 127.0.0.1 stand in for the internal services an attacker would aim at; host names are resolved
by a resolver the runtime is given (a table, then the system's), since public test names do not resolve offline.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from chatbox.adapters.http_container import HttpContainerConnector
from chatbox.adapters.http_webhook import WebhookClient
from chatbox.adapters.outbound_http import build_outbound_client
from chatbox.adapters.system_resolver import system_resolver
from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.addresses import (
    AddressKind,
    AddressPolicy,
    IPAddress,
    OperatorAllowlist,
    check_url,
    classify_address,
    parse_ipv4,
    parse_target_url,
)
from chatbox.domain.errors import ConnectorUnavailableError, TargetRefusedError
from chatbox.domain.settings import Settings
from chatbox.ports.connector import ConnectionContext, OutboundMessage
from chatbox.runtime import Runtime
from chatbox.services import sending
from chatbox.store.models import Connection
from tests.conftest import AccountKey, platforms_without_connectors
from tests.support.api import assert_error, create_connection, create_credential, create_mailbox
from tests.support.mcp import ConnectorReply, StandInConnector, running_connector
from tests.support.pipeline import post_inbound
from tests.support.receiver import Reply, running_receiver
from tests.support.tls import issue_certificates

CONNECTOR_TOKEN = "connector-token-0123456789abcdef"
INTERNAL_REPLY = "internal-service-reply-marker"


class TableResolver:
    """Answers from a table (a list of answers per name, the last repeating), else asks the system; counts lookups."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        self.lookups.append(host)
        answers = self.table.get(host)
        if answers is None:
            return system_resolver(host, port)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return [ipaddress.ip_address(a) for a in answer]


def controlled_dns() -> TableResolver:
    return TableResolver({"internal.test": [["127.0.0.1"]]})


# Every spelling that reached a loopback service before; `{port}` is the service's.
LOOPBACK_SPELLINGS = [
    "127.1:{port}",
    "2130706433:{port}",
    "0x7f000001:{port}",
    "0177.0.0.1:{port}",
    "0:{port}",
    "[::ffff:127.0.0.1]:{port}",
    "[::127.0.0.1]:{port}",
    "[64:ff9b::7f00:1]:{port}",
    "[2002:7f00:1::]:{port}",
    "localhost:{port}",
    "localhost.:{port}",
    "internal.test:{port}",  # resolves to 127.0.0.1 through the runtime's resolver
]


def loopback_urls(port: int, path: str = "/v1/send") -> list[str]:
    return [f"http://{spelling.format(port=port)}{path}" for spelling in LOOPBACK_SPELLINGS]


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    built = build_runtime(settings, platforms=platforms_without_connectors(), resolve_host=controlled_dns())
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def connector() -> Iterator[StandInConnector]:
    with running_connector(CONNECTOR_TOKEN) as running:
        yield running


def _port(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


# --- the pure policy ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7F.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("10.1", "10.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("8.8.8.8.", "8.8.8.8"),
    ],
)
def test_numeric_hosts_are_read_as_the_address_a_resolver_reads(host: str, address: str) -> None:
    assert parse_ipv4(host.lower()) == ipaddress.IPv4Address(address)
    assert parse_target_url(f"http://{host}:8080/x").address == ipaddress.IPv4Address(address)
    if not host.endswith("."):  # what the C library's resolver makes of it: the same address
        assert socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)[0][4][0] == address


@pytest.mark.parametrize("host", ["example.com", "0x7f000001.example", "1.2.3.example"])
def test_names_are_not_numbers(host: str) -> None:
    assert parse_ipv4(host) is None


@pytest.mark.parametrize("host", ["127.0.0.256", "1.2.3.4.5", "08", "0x1g.0", "4294967296", "1..2"])
def test_malformed_numeric_hosts_are_refused(host: str) -> None:
    with pytest.raises(TargetRefusedError):
        parse_target_url(f"http://{host}/hook")


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "::ffff:0:8.8.8.8",
        "64:ff9b::808:808",
        "64:ff9b:1::1",
        "2002:808:808::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    ],  # fmt: skip
)
def test_ipv6_forms_embedding_ipv4_are_refused_whatever_they_carry(address: str) -> None:
    ip = ipaddress.IPv6Address(address)

    assert classify_address(ip) is AddressKind.embedded_ipv4
    assert not AddressPolicy(allow_private=True, allow_loopback=True).permits(ip)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", AddressKind.public),
        ("2606:4700:4700::1111", AddressKind.public),
        ("127.0.0.2", AddressKind.loopback),
        ("::1", AddressKind.loopback),
        ("10.0.0.1", AddressKind.private),
        ("100.64.0.1", AddressKind.private),
        ("fd00::1", AddressKind.private),
        ("2001:db8::1", AddressKind.private),
        ("169.254.169.254", AddressKind.link_local),
        ("fe80::1", AddressKind.link_local),
        ("0.0.0.0", AddressKind.unspecified),
        ("::", AddressKind.unspecified),
        ("224.0.0.1", AddressKind.multicast),
        ("255.255.255.255", AddressKind.multicast),
    ],
)
def test_addresses_are_classified_by_their_registry_ranges(address: str, kind: AddressKind) -> None:
    assert classify_address(ipaddress.ip_address(address)) is kind


def test_dev_allowances_never_open_metadata_unspecified_or_multicast() -> None:
    permissive = AddressPolicy(allow_private=True, allow_loopback=True)

    assert permissive.permits(ipaddress.ip_address("10.0.0.1")) and permissive.permits(ipaddress.ip_address("::1"))
    for refused in ("169.254.169.254", "fe80::1", "0.0.0.0", "224.0.0.1"):
        assert not permissive.permits(ipaddress.ip_address(refused)), refused


@pytest.mark.parametrize(
    "url",
    ["http://user:pass@example.com/hook", "http://@example.com/hook", "http://example.com@127.0.0.1/hook"],
)
def test_urls_carrying_userinfo_are_refused(url: str) -> None:
    with pytest.raises(TargetRefusedError, match="user name or password"):
        parse_target_url(url)


def test_a_name_resolving_to_loopback_is_refused_at_configuration_and_an_unresolvable_one_waits() -> None:
    policy = AddressPolicy(resolve=controlled_dns())

    with pytest.raises(TargetRefusedError, match=r"internal\.test \(127\.0\.0\.1\), a loopback address"):
        check_url("https://internal.test/hook", policy)
    check_url("https://agent.example.test/hook", policy)  # checked again when connecting


def test_operator_allowlist_admits_named_hosts_ports_and_networks_only() -> None:
    allowlist = OperatorAllowlist.parse(" signal.internal:8080 , Discord.Internal., 10.8.0.0/16, [fd00::5]:9000 ")
    private = ipaddress.ip_address("192.168.1.5")

    assert allowlist.admits(private, "signal.internal", 8080)
    assert not allowlist.admits(private, "signal.internal", 8081)
    assert allowlist.admits(private, "discord.internal", 1234)
    assert allowlist.admits(ipaddress.ip_address("10.8.3.4"), "anything.example", 80)
    assert not allowlist.admits(ipaddress.ip_address("10.9.0.1"), "anything.example", 80)
    assert allowlist.admits(ipaddress.ip_address("fd00::5"), "fd00::5", 9000)
    assert not OperatorAllowlist.parse("")


@pytest.mark.parametrize("value", ["10.0.0.0/33", "host:99999", "bad host", "[fd00::1"])
def test_a_malformed_connector_allowlist_stops_the_settings(value: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="connector_allowed_hosts"):
        Settings(home=tmp_path, connector_allowed_hosts=value)


# --- configuration: refused with a clear 422, before anything is stored ------------------------------------------


def test_every_loopback_spelling_is_refused_as_a_webhook_url(
    client: TestClient, account: AccountKey, connector: StandInConnector
) -> None:
    mailbox = create_mailbox(client, account)

    accepted = {}
    for url in loopback_urls(_port(connector.url), "/hook"):
        response = client.put(f"/v1/mailboxes/{mailbox['id']}", json={"webhook_url": url}, headers=account.headers)
        message = response.json().get("message", "")
        if response.status_code != 422 or "webhook_url points at" not in message or "SSRF" not in message:
            accepted[url] = response.text

    assert accepted == {}
    assert connector.requests == []
    assert client.get(f"/v1/mailboxes/{mailbox['id']}", headers=account.headers).json()["webhook_url"] is None


def test_every_loopback_spelling_is_refused_as_a_connector_outbound_url(
    client: TestClient, account: AccountKey, connector: StandInConnector
) -> None:
    mailbox = create_mailbox(client, account)

    accepted = {}
    for url in loopback_urls(_port(connector.url)):
        response = client.post(
            f"/v1/mailboxes/{mailbox['id']}/connections",
            json={"platform": "signal", "config": {"outbound_url": url}},
            headers=account.headers,
        )
        message = response.json().get("message", "")
        if response.status_code != 422 or "config.outbound_url points at" not in message or "SSRF" not in message:
            accepted[url] = response.text

    assert accepted == {}
    assert connector.requests == []


@pytest.mark.parametrize(
    ("outbound_url", "why"),
    [
        ("http://user:secret@connector.example.test/v1/send", "user name or password"),
        ("ftp://connector.example.test/v1/send", "http:// or https://"),
        (42, "send URL"),
    ],
)
def test_a_malformed_connector_url_is_refused_at_create(
    client: TestClient, account: AccountKey, outbound_url: Any, why: str
) -> None:
    mailbox = create_mailbox(client, account)

    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json={"platform": "signal", "config": {"outbound_url": outbound_url}},
        headers=account.headers,
    )

    assert why in assert_error(response, 422, "invalid_input")["message"]


# --- send time: a URL stored before the policy tightened reaches nothing, and no reply comes back ---------------


def _signal_connection(client: TestClient, account: AccountKey, outbound_url: str) -> dict[str, Any]:
    mailbox = create_mailbox(client, account)
    credential = create_credential(client, account, kind="mcp_proxy_auth", name="out", value=CONNECTOR_TOKEN)
    config = {"outbound_url": outbound_url, "outbound_credential_id": credential["id"]}
    return create_connection(client, account, mailbox["id"], platform="signal", config=config)


def _store_outbound_url(runtime: Runtime, connection_id: str, url: str) -> None:
    """What an older chatbox, or a looser policy, let through: written as it was stored then."""
    with runtime.db.session() as db:
        connection = db.get(Connection, connection_id)
        assert connection is not None
        connection.config = {**connection.config, "outbound_url": url}
        db.commit()


def _send(runtime: Runtime, connection: dict[str, Any], text: str = "hello") -> sending.SendReceipt:
    with runtime.db.session() as db:
        return sending.send_message(
            db, runtime.vault, runtime.platforms, connection["mailbox_id"], text, chat="signal:chat-1"
        )


def test_send_message_to_a_stored_loopback_url_reaches_nothing_and_echoes_no_reply(
    client: TestClient, runtime: Runtime, account: AccountKey, connector: StandInConnector
) -> None:
    urls = loopback_urls(_port(connector.url))
    # Were it reached, the internal service would answer with text that must never come back to the tenant.
    connector.script = [ConnectorReply(400, {"code": "x", "message": INTERNAL_REPLY}) for _ in urls]

    not_refused = {}
    for url in urls:
        connection = _signal_connection(client, account, "https://connector.example.test/v1/send")
        _store_outbound_url(runtime, connection["id"], url)
        post_inbound(client, connection, "m-1")
        try:
            receipt = _send(runtime, connection)
        except ConnectorUnavailableError as exc:
            if "SSRF" not in exc.message or INTERNAL_REPLY in exc.message or "outbound_url" not in exc.message:
                not_refused[url] = exc.message
        except Exception as exc:  # noqa: BLE001 - any other outcome is the failure being reported
            not_refused[url] = f"{type(exc).__name__}: {exc}"
        else:
            not_refused[url] = f"sent as {receipt.external_id}"

    assert not_refused == {}
    assert connector.requests == []


def test_the_operator_allowlist_admits_a_private_container_connector_and_nothing_else(
    settings: Settings, account: AccountKey, connector: StandInConnector
) -> None:
    port = _port(connector.url)
    operator = settings.model_copy(update={"connector_allowed_hosts": f"127.0.0.1:{port}"})
    runtime = build_runtime(operator, platforms=platforms_without_connectors(), resolve_host=controlled_dns())
    with TestClient(create_app(runtime)) as client:
        connection = _signal_connection(client, account, connector.url)
        post_inbound(client, connection, "m-1")

        receipt = _send(runtime, connection)

        assert receipt.external_id == "1001"
        assert [r.body["text"] for r in connector.requests] == ["hello"]
        # Another port of the same host, and a webhook on the admitted one, stay refused.
        other = create_mailbox(client, account)
        refused = client.post(
            f"/v1/mailboxes/{other['id']}/connections",
            json={"platform": "signal", "config": {"outbound_url": f"http://127.0.0.1:{port + 1}/v1/send"}},
            headers=account.headers,
        )
        assert "SSRF" in assert_error(refused, 422, "invalid_input")["message"]
        webhook = client.put(
            f"/v1/mailboxes/{other['id']}", json={"webhook_url": connector.url}, headers=account.headers
        )
        assert "SSRF" in assert_error(webhook, 422, "invalid_input")["message"]
    runtime.close()


# --- the pinned client: one resolution per connection, the checked address, TLS on the name, no proxy, no redirect


def test_a_rebinding_answer_is_never_connected_to(tmp_path: Path) -> None:
    with running_receiver() as receiver:
        port = _port(receiver.url)
        # The name answers loopback (allowed here) once, then the cloud metadata address.
        dns = TableResolver({"rebind.test": [["127.0.0.1"], ["169.254.169.254"]]})
        client = WebhookClient(AddressPolicy(allow_loopback=True, resolve=dns), timeout=5)
        url = f"http://rebind.test:{port}/hook"

        first = client.post(url, b"{}", {"content-type": "application/json"})
        second = client.post(url, b"{}", {"content-type": "application/json"})
        client.close()

    assert first.ok and len(receiver.requests) == 1
    assert receiver.requests[0].headers["host"] == f"rebind.test:{port}"
    # One lookup per connection (http.server closes each): the second connection got the metadata answer, and
    # was refused on it rather than connecting anywhere.
    assert dns.lookups == ["rebind.test", "rebind.test"]
    assert second.status is None and "169.254.169.254" in (second.error or "") and "SSRF" in (second.error or "")


def test_tls_is_verified_against_the_url_host_name_not_the_pinned_address(tmp_path: Path) -> None:
    certificates = issue_certificates(tmp_path, ["hooks.example.test"])
    dns = TableResolver({"hooks.example.test": [["127.0.0.1"]], "other.example.test": [["127.0.0.1"]]})
    with running_receiver(tls=certificates.server_context) as receiver:
        port = _port(receiver.url)
        client = build_outbound_client(
            AddressPolicy(allow_loopback=True, resolve=dns), timeout=5, verify=certificates.client_context()
        )
        try:
            response = client.post(f"https://hooks.example.test:{port}/hook", content=b"{}")
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                client.post(f"https://other.example.test:{port}/hook", content=b"{}")
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                client.post(f"https://127.0.0.1:{port}/hook", content=b"{}")
        finally:
            client.close()

    assert response.status_code == 200
    assert [r.headers["host"] for r in receiver.requests] == [f"hooks.example.test:{port}"]
    assert certificates.sni_seen[0] == "hooks.example.test"


def test_proxy_settings_in_the_environment_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_receiver() as proxy, running_receiver() as target, running_connector(CONNECTOR_TOKEN) as connector:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url.removesuffix("/hook"))
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        policy = AddressPolicy(allow_loopback=True)
        webhooks = WebhookClient(policy, timeout=5)
        containers = HttpContainerConnector(policy, timeout=5)
        try:
            posted = webhooks.post(target.url, b"{}", {})
            sent = containers.send(
                ConnectionContext(
                    "conn_1", "signal", {"outbound_url": connector.url}, {"outbound_auth": CONNECTOR_TOKEN}
                ),
                OutboundMessage("chat-1", "hi", None, {}),
            )
        finally:
            webhooks.close()
            containers.close()

    assert posted.ok and len(target.requests) == 1
    assert sent.external_id == "1001"
    assert proxy.requests == []


def test_redirects_are_failures_and_never_followed() -> None:
    with (
        running_receiver() as inside,
        running_receiver() as redirecting,
        running_connector(CONNECTOR_TOKEN) as connector,
    ):
        redirecting.default = Reply(302, {"location": inside.url})
        connector.script = [ConnectorReply(307, {}, {"location": inside.url})]
        policy = AddressPolicy(allow_loopback=True)
        webhooks = WebhookClient(policy, timeout=5)
        containers = HttpContainerConnector(policy, timeout=5)
        try:
            posted = webhooks.post(redirecting.url, b"{}", {})
            with pytest.raises(ConnectorUnavailableError, match="redirect"):
                containers.send(
                    ConnectionContext(
                        "conn_1", "signal", {"outbound_url": connector.url}, {"outbound_auth": CONNECTOR_TOKEN}
                    ),
                    OutboundMessage("chat-1", "hi", None, {}),
                )
        finally:
            webhooks.close()
            containers.close()

    assert posted.status == 302 and not posted.ok and "redirects are not followed" in (posted.error or "")
    assert len(redirecting.requests) == 1 and len(connector.requests) == 1
    assert inside.requests == []


# --- the generic inbound route takes container connections' tokens only -------------------------------------------


@pytest.mark.parametrize("platform", ["telegram", "slack"])
def test_a_webhook_platforms_inbound_token_is_refused_on_the_generic_route(
    client: TestClient, account: AccountKey, platform: str
) -> None:
    mailbox = create_mailbox(client, account)
    webhook_mode = create_connection(client, account, mailbox["id"], platform=platform)
    body = {"external_chat_id": "chat-1", "external_message_id": "m-1", "text": "forged"}
    path = f"/v1/connections/{webhook_mode['id']}/messages"

    refused = client.post(path, json=body, headers={"Authorization": f"Bearer {webhook_mode['inbound_token']}"})
    wrong = client.post(path, json=body, headers={"Authorization": "Bearer inb_wrong"})

    message = assert_error(refused, 403, "forbidden")["message"]
    assert f"/v1/ingest/{platform}/{webhook_mode['id']}" in message
    assert_error(wrong, 401, "unauthorized")  # the platform is told only to a caller holding the token
    container = create_connection(client, account, mailbox["id"], platform="signal")
    assert post_inbound(client, container, "m-1")["duplicate"] is False
