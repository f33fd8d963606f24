"""The runtime: what the faces and services of one process share, built by a composition root.

`Runtime` holds ports, never adapters: `chatbox.compose.build_runtime` (the functions, the CLI and
`chatbox dev`) decides which adapters fill them. Caches and pooled clients live here, not in
module globals, so two runtimes in one process (tests) never see each other's state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chatbox.domain.addresses import AddressPolicy, Resolver
from chatbox.domain.attachments import LinkSigner
from chatbox.domain.settings import Settings
from chatbox.domain.vault import Vault
from chatbox.ports.platforms import PlatformRegistry
from chatbox.ports.queue import DeliveryQueue
from chatbox.ports.webhook_sender import WebhookSender
from chatbox.services.attachments import link_signer
from chatbox.services.connector_programs import PortPicker
from chatbox.services.quotas import AccountLimits
from chatbox.services.throttle import AuthThrottle, ThrottlePolicy
from chatbox.store.database import Database

if TYPE_CHECKING:
    # The ingest path (its accept statements for each database) loads with the first ingest: the api and mcp
    # functions' cold starts never serve one. The deliverer and the event dispatcher load with their first use too
    # (the delivery function imports them with its batch code; the api and mcp functions rarely need them).
    from chatbox.services.delivery_attempt import Deliverer
    from chatbox.services.event_dispatch import EventDispatcher
    from chatbox.services.ingest import IngestDispatcher


@dataclass
class Runtime:
    settings: Settings
    db: Database
    vault: Vault
    queue: DeliveryQueue
    # Builds the webhook sender on first delivery (it owns a pooled HTTP client that cold starts need not pay for).
    webhook_sender: Callable[[], WebhookSender]
    # The platforms this process serves, filled by the composition root.
    platforms: PlatformRegistry = field(default_factory=PlatformRegistry)
    # Failed-authentication counts of every auth surface in this process (built from the settings).
    auth_throttle: AuthThrottle = field(init=False)
    # Resolves host names for the configuration-time check of tenant-set URLs (the composition root gives
    # the one its HTTP clients connect with); None checks them statically only.
    resolve_host: Resolver | None = None
    # Set where chatbox runs container connectors' programs itself (`chatbox dev`, `chatbox api`, never Lambda):
    # picks a free loopback port for a new managed connection (`chatbox.services.connector_programs`).
    program_port: PortPicker | None = None
    _deliverer: Deliverer | None = field(default=None, init=False)
    _ingest: IngestDispatcher | None = field(default=None, init=False)
    _events: EventDispatcher | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.auth_throttle = auth_throttle(self.settings)

    @property
    def account_limits(self) -> AccountLimits:
        """The quotas every account has in this deployment."""
        return AccountLimits.from_settings(self.settings)

    @property
    def address_policy(self) -> AddressPolicy:
        """The policy for webhook URLs (mailboxes)."""
        return address_policy(self.settings, self.resolve_host)

    @property
    def connector_address_policy(self) -> AddressPolicy:
        """The policy for container connector URLs (`config.outbound_url` of a connection)."""
        return connector_address_policy(self.settings, self.resolve_host)

    @property
    def attachment_links(self) -> LinkSigner:
        """Signs the chatbox urls of attachments (webhook bodies, read_chat) and checks them (GET /v1/attachments)."""
        return link_signer(self.settings, self.vault)

    @property
    def deliverer(self) -> Deliverer:
        """The webhook deliverer, built on first use."""
        if self._deliverer is None:
            from chatbox.services.delivery_attempt import Deliverer, DeliveryPolicy

            settings = self.settings
            self._deliverer = Deliverer(
                self.db,
                self.vault,
                self.webhook_sender(),
                DeliveryPolicy(
                    max_attempts=settings.delivery_max_attempts,
                    retry_base_seconds=settings.delivery_retry_base_seconds,
                    pause_after_failures=settings.pause_after_failures,
                ),
                links=self.attachment_links,
            )
        return self._deliverer

    @property
    def event_dispatcher(self) -> EventDispatcher:
        """The service-event sender, built on first use with an HTTP client of its own: a slow event subscriber
        never holds a connection message deliveries wait for."""
        if self._events is None:
            from chatbox.services.event_dispatch import EventDispatcher

            self._events = EventDispatcher(self.db, self.vault, self.webhook_sender())
        return self._events

    @property
    def ingest(self) -> IngestDispatcher:
        """The ingest dispatcher (and its caches), built on first use."""
        if self._ingest is None:
            from chatbox.services.ingest import IngestDispatcher

            self._ingest = IngestDispatcher(self.db, self.vault, self.queue, self.platforms, self.auth_throttle)
        return self._ingest

    def close(self) -> None:
        if self._deliverer is not None:
            self._deliverer.client.close()
        if self._events is not None:
            self._events.client.close()
        self.platforms.close()
        self.db.dispose()


def auth_throttle(settings: Settings) -> AuthThrottle:
    """The process's failed-authentication throttle, with the deployment's limits."""
    return AuthThrottle(
        ThrottlePolicy(
            per_client=settings.auth_failures_per_client,
            per_credential=settings.auth_failures_per_credential,
            window_seconds=settings.auth_failure_window_seconds,
        )
    )


def address_policy(settings: Settings, resolve: Resolver | None = None) -> AddressPolicy:
    """The deployment's policy for webhook URLs: public addresses, plus what the dev allowances open."""
    return AddressPolicy(
        allow_private=settings.allow_private_webhooks, allow_loopback=settings.allow_loopback_webhooks, resolve=resolve
    )


def connector_address_policy(settings: Settings, resolve: Resolver | None = None) -> AddressPolicy:
    """The policy for container connector URLs: the webhook policy, plus the hosts the operator admits
    (CHATBOX_CONNECTOR_ALLOWED_HOSTS). Only an operator setting widens it, never a tenant's URL."""
    return AddressPolicy(
        allow_private=settings.allow_private_webhooks,
        allow_loopback=settings.allow_loopback_webhooks,
        operator_allowlist=settings.connector_allowlist,
        resolve=resolve,
    )
