"""The composition root shared by every entry point: settings in, a `Runtime` of adapters out.

The functions (`functions/<name>/handler.py`), the CLI and `chatbox dev` call `build_runtime`; it is
the one place that picks adapters (local or SQS queue, the HTTP webhook sender, the HTTP container
connector). The SQS adapter (and botocore) load only when chosen.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

from pydantic_settings import BaseSettings

from chatbox.adapters.local_queue import LocalQueue
from chatbox.adapters.system_resolver import system_resolver
from chatbox.domain.addresses import Resolver
from chatbox.domain.errors import VaultError
from chatbox.domain.redaction import register_secrets
from chatbox.domain.settings import Settings
from chatbox.domain.vault import Vault, generate_key
from chatbox.ports.connector import Connector
from chatbox.ports.metrics import DiscardingSink, current_sink
from chatbox.ports.platforms import PlatformRegistry, PlatformSpec
from chatbox.ports.queue import DeliveryQueue
from chatbox.ports.webhook_sender import WebhookSender
from chatbox.runtime import Runtime, address_policy, connector_address_policy
from chatbox.store.database import Database

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


def build_queue(settings: Settings, db: Database) -> DeliveryQueue:
    """The queue adapter named by CHATBOX_QUEUE."""
    if settings.queue == "sqs":
        from chatbox.adapters.sqs_queue import SqsQueue

        return SqsQueue.from_settings(settings)
    return LocalQueue(
        db,
        visibility_timeout=settings.local_queue_visibility_seconds,
        # No receive limit of its own: a message waiting behind its chat's failing one is received often
        # without being tried, and the core's crash guard (which discounts those deferrals) marks what
        # it gives up as dead in the database, where a queue-side dead letter would leave it pending.
        max_receives=0,
        wake_path=settings.home / "queue.wake",
    )


def build_runtime(
    settings: Settings,
    *,
    platforms: Iterable[PlatformSpec] = (),
    platform_settings: Mapping[str, BaseSettings] | None = None,
    generate_vault_key: bool = False,
    resolve_host: Resolver = system_resolver,
) -> Runtime:
    """A runtime serving `platforms` (their own settings read from the environment unless given in
    `platform_settings`), on the queue and database the settings name. `resolve_host` resolves the host
    names of tenant-set URLs, for their check at configuration and for connecting (tests inject their own).

    The process records its metrics into Prometheus (`chatbox.adapters.prometheus_metrics`) unless its root
    installed another sink before (`chatbox.adapters.aws_lambda` installs EMF)."""
    register_secrets(settings.secret_values())
    if isinstance(current_sink(), DiscardingSink):  # unless the root chose another sink first (Lambda: EMF)
        # Imported here: prometheus_client is no part of a Lambda cold start.
        from chatbox.adapters.prometheus_metrics import install_prometheus_metrics

        install_prometheus_metrics()
    vault = Vault.from_strings(resolve_vault_key(settings, generate=generate_vault_key), settings.vault_old_keys)
    db = Database(settings.db_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)

    # The HTTP adapters (and httpx) are imported when first built, so a cold start that sends nothing skips them.
    def webhook_sender() -> WebhookSender:
        from chatbox.adapters.http_webhook import WebhookClient

        return WebhookClient(address_policy(settings, resolve_host), timeout=settings.delivery_timeout_seconds)

    def container_connector() -> Connector:
        from chatbox.adapters.http_container import HttpContainerConnector

        return HttpContainerConnector(connector_address_policy(settings, resolve_host))

    registry = PlatformRegistry(platforms, container_connector=container_connector, settings=platform_settings)
    return Runtime(
        settings=settings,
        db=db,
        vault=vault,
        queue=build_queue(settings, db),
        webhook_sender=webhook_sender,
        platforms=registry,
        resolve_host=resolve_host,
    )


def discover_platforms() -> list[PlatformSpec]:
    """The platforms installed as `chatbox.platforms` entry points (pyproject.toml): what the CLI and
    `chatbox dev` serve. Loading a spec imports its package's spec module only, never its SDK."""
    specs = []
    for entry in entry_points(group="chatbox.platforms"):
        spec = entry.load()
        if not isinstance(spec, PlatformSpec):
            raise TypeError(f"entry point chatbox.platforms:{entry.name} is not a PlatformSpec")
        specs.append(spec)
    return specs
