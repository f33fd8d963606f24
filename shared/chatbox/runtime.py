"""What every entry point composes once per process: settings, database, vault."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from chatbox.connectors_port import ConnectorRegistry
from chatbox.container_connector import CONTAINER_PLATFORMS, HttpContainerConnector
from chatbox.errors import VaultError
from chatbox.ingest_port import WebhookRegistry
from chatbox.queues import DeliveryQueue
from chatbox.queues.factory import build_queue
from chatbox.services.delivery import Deliverer, DeliveryPolicy
from chatbox.settings import Settings
from chatbox.store.database import Database
from chatbox.vault import Vault, generate_key
from chatbox.webhook_client import AddressPolicy, WebhookClient

log = logging.getLogger(__name__)


def resolve_vault_key(settings: Settings, *, generate: bool = False) -> str:
    """`CHATBOX_VAULT_KEY`, else the key kept under CHATBOX_HOME, else (with `generate`) a new kept key."""
    if settings.vault_key:
        return settings.vault_key
    key_file = settings.vault_key_file
    if key_file.exists():
        return key_file.read_text().strip()
    if not generate:
        raise VaultError(f"no vault key: set CHATBOX_VAULT_KEY or run `chatbox dev` once to create {key_file}")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(generate_key() + "\n")
    log.warning("CHATBOX_VAULT_KEY is unset: generated a vault key in %s; back it up, or secrets are lost", key_file)
    return key_file.read_text().strip()


@dataclass
class Runtime:
    settings: Settings
    db: Database
    vault: Vault
    queue: DeliveryQueue
    # Webhook-mode platforms (telegram, slack): filled by composition roots (connectors.webhook_connectors).
    webhooks: WebhookRegistry = field(default_factory=WebhookRegistry)
    _deliverer: Deliverer | None = field(default=None, init=False)
    _connectors: ConnectorRegistry | None = field(default=None, init=False)

    @property
    def address_policy(self) -> AddressPolicy:
        return AddressPolicy(
            allow_private=self.settings.allow_private_webhooks, allow_loopback=self.settings.allow_loopback_webhooks
        )

    @property
    def deliverer(self) -> Deliverer:
        """The webhook deliverer, built on first use (it owns a pooled HTTP client)."""
        if self._deliverer is None:
            settings = self.settings
            self._deliverer = Deliverer(
                self.db,
                self.vault,
                WebhookClient(self.address_policy, timeout=settings.delivery_timeout_seconds),
                DeliveryPolicy(
                    max_attempts=settings.delivery_max_attempts,
                    retry_base_seconds=settings.delivery_retry_base_seconds,
                    pause_after_failures=settings.pause_after_failures,
                ),
            )
        return self._deliverer

    @property
    def connectors(self) -> ConnectorRegistry:
        """The outbound connectors: container platforms over HTTP (built on first use, pooled).

        Webhook-mode platforms (telegram, slack) join from `webhooks` when the composition root registered
        them; otherwise sending there is a clear ConnectorUnavailableError.
        """
        if self._connectors is None:
            http = HttpContainerConnector(self.address_policy)
            self._connectors = ConnectorRegistry(
                {**dict.fromkeys(CONTAINER_PLATFORMS, http), **self.webhooks.senders()}
            )
        return self._connectors

    def close(self) -> None:
        if self._deliverer is not None:
            self._deliverer.client.close()
        if self._connectors is not None:
            self._connectors.close()
        self.webhooks.close()
        self.db.dispose()


def build_runtime(
    settings: Settings, *, generate_vault_key: bool = False, webhooks: WebhookRegistry | None = None
) -> Runtime:
    vault = Vault.from_strings(resolve_vault_key(settings, generate=generate_vault_key), settings.vault_old_keys)
    db = Database(settings.db_url)
    return Runtime(
        settings=settings, db=db, vault=vault, queue=build_queue(settings, db), webhooks=webhooks or WebhookRegistry()
    )
