"""What every container connector program shares: settings from the environment, a durable inbound spool, the
inbox that drains it to chatbox, the contract's `/v1/send` + `/healthz` server, and the process runner.

It imports nothing from `chatbox`: a container image ships only `connectors/`, and the HTTP contract
(`connectors/CONTRACT.md`, "Writing a container program") is the whole interface.

Example (a program's `__main__`):
    ```python
    settings = load(MySettings)
    run(lambda stop: serve(settings, stop), settings)
    ```
"""

from __future__ import annotations

from connectors.relay.inbox import Inbox
from connectors.relay.program import Relay, run
from connectors.relay.server import PlatformDown, RateLimited, SendRefused, SendRequest
from connectors.relay.settings import RelaySettings, load
from connectors.relay.spool import Spool, SpooledMessage

__all__ = [
    "Inbox",
    "PlatformDown",
    "RateLimited",
    "Relay",
    "RelaySettings",
    "SendRefused",
    "SendRequest",
    "Spool",
    "SpooledMessage",
    "load",
    "run",
]
