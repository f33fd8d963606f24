"""Platforms: each connector package exports one `PlatformSpec`; a `PlatformRegistry` holds a process's specs.

The core knows no platform by name. Its platform list, connection validation, ingest paths, MCP send
tools and OpenAPI enums all come from the registered specs, so a new platform is a new folder under
`connectors/` exporting a spec, and nothing else. Composition roots fill the registry: the Lambda
functions with `connectors.builtin_platforms()`, the CLI and `chatbox dev` from the `chatbox.platforms`
entry-point group (pyproject.toml), tests with whatever they need.

Example (a connector package's `spec.py`):
    ```python
    class TelegramSendOptions(BaseModel):
        parse_mode: Literal["MarkdownV2", "HTML"] | None = None

    def _connector(settings: TelegramSettings) -> Connector:
        from connectors.telegram.connector import TelegramConnector  # the SDK loads on first use only
        return TelegramConnector(settings.api_url)

    SPEC = PlatformSpec(
        name="telegram", label="Telegram", mode=PlatformMode.webhook,
        summary="A Telegram bot (Bot API), webhook mode.",
        send_options=TelegramSendOptions, settings=TelegramSettings, connector=_connector,
        secrets=(ConnectionField("bot_token", "The bot's token from @BotFather"),),
    )
    ```
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeGuard

from pydantic import BaseModel, ConfigDict
from pydantic_settings import BaseSettings

from chatbox.domain.errors import ConnectorUnavailableError, InvalidInputError
from chatbox.ports.connector import ConnectionContext, Connector
from chatbox.ports.live import LiveSource

if TYPE_CHECKING:
    # Only the webhook platforms' ingest loads the ingest port (and the normalized message models under it).
    from chatbox.ports.ingest import WebhookConnector

PLATFORM_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


class PlatformMode(StrEnum):
    """How a platform's connector runs, which decides where its inbound arrives and how chatbox sends."""

    # The platform POSTs to `/v1/ingest/{platform}/{connection_id}`; the connector runs in-process
    # (verify, parse, provision, send).
    webhook = "webhook"
    # A long-lived client in the chatbox process (a gateway socket); inbound goes through the generic route.
    long_lived = "long_lived"
    # A program of its own posts normalized messages to `/v1/connections/{id}/messages`; chatbox sends
    # to it over HTTP (`connectors/CONTRACT.md`).
    container = "container"


class NoSendOptions(BaseModel):
    """A platform whose send tool takes nothing beyond send_message's arguments."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ConnectionField:
    """A secret or config key a connection of the platform takes at create, with its documentation."""

    name: str
    description: str
    required: bool = True


@dataclass(frozen=True)
class ConnectorProgram:
    """A container platform's program, as chatbox runs it: `python -m <module>` with the contract's variables
    (`CHATBOX_API_URL`, `CHATBOX_CONNECTION_ID`, `CHATBOX_INBOUND_TOKEN`, `CHATBOX_OUTBOUND_AUTH`,
    `CONNECTOR_HOST`, `CONNECTOR_PORT`, `CONNECTOR_STATE_DIR`: `connectors/CONTRACT.md`) plus the
    platform's own, which `env` derives from the connection (e.g. `SIGNAL_ACCOUNT` from its config,
    `DISCORD_BOT_TOKEN` from its secrets).

    `check_input(config, secrets)` runs when a connection that chatbox will run is created (a managed one:
    `chatbox.services.connector_programs`) and raises InvalidInputError for what the program could not start
    with (a missing or malformed account, token, URL), so the mistake is a 422 rather than a crash loop.
    """

    module: str
    env: Callable[[ConnectionContext], Mapping[str, str]]
    check_input: Callable[[Mapping[str, Any], Mapping[str, str]], None] | None = None


@dataclass(frozen=True)
class PlatformSpec:
    """Everything the core needs to know about one platform.

    Args:
        name: the platform's id in chat addresses (`<name>:<external_id>`), paths and tool names.
        label: its human name, for tool titles and docs.
        mode: how its connector runs (see PlatformMode).
        summary: one paragraph for docs and the admin MCP server.
        send_options: the pydantic model of its send options; the `<name>_send` MCP tool's schema is
            send_message's plus these fields, and the connector receives them in `OutboundMessage.options`.
        send_notes: a sentence appended to the `<name>_send` tool's description.
        secrets / config: what a connection takes at create; required ones are checked by the core.
        settings: its settings model (pydantic-settings, e.g. prefix `CHATBOX_TELEGRAM_`), read once
            when its connector is first built.
        connector: builds the in-process connector from those settings (None for container platforms,
            which the core reaches over HTTP). Import the platform SDK inside it, not at module level.
        ingest_headers: headers its webhook carries as proof of origin, for the OpenAPI document.
        live_source: builds the source that fetches a connection's events over a long poll or a socket
            (`chatbox.ports.live`) from the same settings, for connections whose `provision` chose it.
        program: for a container platform, the program chatbox can run itself (`chatbox dev`,
            `chatbox connector run`) instead of an operator running it elsewhere.
    """

    name: str
    label: str
    mode: PlatformMode
    summary: str
    send_options: type[BaseModel] = NoSendOptions
    send_notes: str = ""
    secrets: tuple[ConnectionField, ...] = ()
    config: tuple[ConnectionField, ...] = ()
    settings: type[BaseSettings] | None = None
    connector: Callable[[Any], Connector] | None = None
    ingest_headers: Mapping[str, str] = field(default_factory=dict)
    live_source: Callable[[Any], LiveSource] | None = None
    program: ConnectorProgram | None = None

    def __post_init__(self) -> None:
        if not PLATFORM_NAME.match(self.name):
            raise ValueError(f"platform name {self.name!r} must match {PLATFORM_NAME.pattern}")

    @property
    def receives_webhooks(self) -> bool:
        return self.mode is PlatformMode.webhook

    def check_connection_input(self, config: Mapping[str, Any], secrets: Mapping[str, str]) -> None:
        """InvalidInputError naming every required secret or config key that is missing."""
        missing = [f"secrets.{f.name} ({f.description})" for f in self.secrets if f.required and f.name not in secrets]
        missing += [f"config.{f.name} ({f.description})" for f in self.config if f.required and f.name not in config]
        if missing:
            raise InvalidInputError(f"a {self.name} connection needs " + "; ".join(missing))


class PlatformRegistry:
    """The platforms one process serves, by name; builds each in-process connector on first use.

    Args:
        specs: the registered platforms.
        container_connector: builds the HTTP connector that reaches every container platform.
        settings: a platform's settings object to use instead of reading its own from the environment.

    Thread-safe. A platform's connector (and its SDK, which costs a cold start hundreds of
    milliseconds) is built only when first needed.
    """

    def __init__(
        self,
        specs: Iterable[PlatformSpec] = (),
        *,
        container_connector: Callable[[], Connector] | None = None,
        settings: Mapping[str, BaseSettings] | None = None,
    ) -> None:
        self._specs: dict[str, PlatformSpec] = {}
        self._container_factory = container_connector
        self._settings = dict(settings or {})
        self._built: dict[str, Connector] = {}
        # Webhook connectors once found, for the ingest path (checking a connector's shape cost ~2% of an ingest).
        self._webhooks: dict[str, WebhookConnector] = {}
        self._container: Connector | None = None
        self._lock = threading.Lock()
        for spec in specs:
            self.register(spec)

    def register(self, spec: PlatformSpec) -> None:
        """Add a platform; ValueError when the name is taken by another spec."""
        existing = self._specs.get(spec.name)
        if existing is not None and existing != spec:
            raise ValueError(f"platform {spec.name!r} is registered twice")
        self._specs[spec.name] = spec

    def names(self) -> tuple[str, ...]:
        """Every registered platform, sorted."""
        return tuple(sorted(self._specs))

    def specs(self) -> tuple[PlatformSpec, ...]:
        return tuple(self._specs[name] for name in self.names())

    def get(self, name: str) -> PlatformSpec | None:
        return self._specs.get(name)

    def spec(self, name: str) -> PlatformSpec:
        """The platform's spec; InvalidInputError naming the platforms served when it is unknown."""
        spec = self._specs.get(name)
        if spec is None:
            served = ", ".join(self.names()) or "none"
            raise InvalidInputError(f"unknown platform; this deployment serves: {served}")
        return spec

    def connector(self, name: str) -> Connector:
        """The platform's outbound connector; ConnectorUnavailableError when this process has none."""
        spec = self._specs.get(name)
        connector = self._build(spec) if spec is not None else None
        if connector is None:
            raise ConnectorUnavailableError(
                f"no {name} connector is available: chatbox cannot send to {name} chats from this deployment; "
                "tell the operator, or answer on another platform"
            )
        return connector

    def webhook(self, name: str) -> WebhookConnector | None:
        """The in-process connector of a webhook-mode platform, or None (unknown, other mode, or none built here)."""
        known = self._webhooks.get(name)
        if known is not None:
            return known
        spec = self._specs.get(name)
        if spec is None or not spec.receives_webhooks:
            return None
        connector = self._build(spec)
        if not _is_webhook_connector(connector):
            return None
        self._webhooks[name] = connector
        return connector

    def live_source(self, name: str) -> LiveSource | None:
        """A new live source for one connection of the platform (from its settings), or None when it has none."""
        spec = self._specs.get(name)
        if spec is None or spec.live_source is None:
            return None
        return spec.live_source(self._platform_settings(spec))

    def _platform_settings(self, spec: PlatformSpec) -> BaseSettings | None:
        settings = self._settings.get(spec.name)
        if settings is None and spec.settings is not None:
            settings = spec.settings()
            self._settings[spec.name] = settings  # read once per process, as for its connector
        return settings

    def _build(self, spec: PlatformSpec) -> Connector | None:
        with self._lock:
            if spec.mode is PlatformMode.container:
                if self._container is None and self._container_factory is not None:
                    self._container = self._container_factory()
                return self._container
            if spec.connector is None:
                return None
            built = self._built.get(spec.name)
            if built is None:
                built = spec.connector(self._platform_settings(spec))
                self._built[spec.name] = built
            return built

    def close(self) -> None:
        with self._lock:
            built = [*self._built.values(), *([self._container] if self._container is not None else [])]
            self._built, self._container, self._webhooks = {}, None, {}
        for connector in built:
            connector.close()


def _is_webhook_connector(connector: Connector | None) -> TypeGuard[WebhookConnector]:
    return connector is not None and all(
        callable(getattr(connector, name, None)) for name in ("verify", "parse", "provision", "deprovision")
    )
