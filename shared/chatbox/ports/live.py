"""The live-receive port: platforms whose inbound chatbox fetches itself, over a long poll or a socket.

A webhook platform pushes to chatbox, which needs a public HTTPS address. On a laptop (`chatbox dev`
with no public URL) Telegram's `getUpdates` and Slack's Socket Mode deliver the same events over a
connection chatbox opens instead. A platform offering that gives its spec a `live_source` factory; its
`provision` decides per connection which way the events come and stores the answer in the
connection's config under `receive_mode` (e.g. `"webhook"`, `"polling"`, `"socket"`). The host that
runs live sources (`chatbox dev`, `chatbox api`; never Lambda, which only serves webhooks) runs one
source per active connection whose `receive_mode` is not `"webhook"`, on a thread of its own, and
stops it when the connection is archived or the process stops.

A source hands what it receives to an `InboundSink`, which is the same durable accept the webhook
route uses: it returns once the messages are committed (so the source may then confirm them to the
platform: advance the `getUpdates` offset, ack the Socket Mode envelope) and raises when they are not
(the source must then not confirm, and retry after a pause). Translation is the platform's same pure
translator its webhook path uses.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from chatbox.ports.connector import ConnectionContext

if TYPE_CHECKING:
    # The normalized message models load with what parses or stores messages, not with the contract.
    from chatbox.domain.normalized import InboundMessage

RECEIVE_MODE = "receive_mode"
WEBHOOK_RECEIVE = "webhook"


class InboundSink(Protocol):
    """Where a live source puts what it received, for one connection.

    Raises (accept): any exception means nothing was committed; the source keeps the events unconfirmed
    and tries again after a pause.
    """

    def accept(self, messages: Sequence[InboundMessage]) -> None:
        """Store the messages durably (each once: `external_message_id` dedupes) before returning."""
        ...

    def cursor(self) -> str | None:
        """The position the source saved last for this connection (e.g. the next `getUpdates` offset)."""
        ...

    def save_cursor(self, value: str) -> None:
        """Remember the source's position durably, after the messages before it were accepted."""
        ...


class LiveSource(Protocol):
    """Receives one connection's events over a long poll or a socket until told to stop.

    `run` blocks: it opens the connection, hands each batch of translated messages to the sink,
    confirms them to the platform only after `sink.accept` returned, reconnects with backoff on
    network errors, and returns soon after `stop` is set (within a poll or read timeout). It raises
    only for a connection that cannot work until someone changes it (a refused token:
    `PlatformRefusedError`), which the host logs and reports instead of retrying in a tight loop.
    """

    def run(self, ctx: ConnectionContext, sink: InboundSink, stop: threading.Event) -> None: ...
