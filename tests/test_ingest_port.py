"""The webhook registry builds a platform's connector (and loads its SDK) only on first use."""

from __future__ import annotations

import subprocess
import sys

from chatbox.domain.settings import Settings
from chatbox.ports.ingest import WebhookPlatform, WebhookRegistry
from connectors import webhook_connectors
from connectors.telegram import TelegramConnector


def test_factories_run_once_on_first_use_and_only_built_connectors_are_closed() -> None:
    built: list[str] = []

    def telegram() -> WebhookPlatform:
        built.append("telegram")
        return TelegramConnector("http://127.0.0.1:9")

    registry = WebhookRegistry(factories={"telegram": telegram})

    assert registry.platforms() == {"telegram"} and built == []
    assert "telegram" in registry.senders() and built == []
    first, second = registry.get("telegram"), registry.get("telegram")
    assert first is second and built == ["telegram"]
    assert registry.get("slack") is None
    registry.close()


def test_composing_the_webhook_connectors_loads_no_platform_sdk() -> None:
    code = (
        "import sys\n"
        "from chatbox.domain.settings import Settings\n"
        "from connectors import webhook_connectors\n"
        "registry = webhook_connectors(Settings(vault_key='x'))\n"
        "assert registry.platforms() == {'telegram', 'slack'}\n"
        "print(sorted(m for m in ('telegram', 'slack_sdk') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)

    assert done.stdout.strip() == "[]"
    registry = webhook_connectors(Settings(vault_key="x"))
    assert registry.get("slack") is not None
    registry.close()
