"""The inbound sink of a live source (`chatbox.ports.live`): one connection's long poll or socket, accepted
through the same durable accept as the webhook and generic routes.

`accept` runs `accept_inbound` for each message (message, chat, delivery and the local queue's row in one
commit, then the queue hand-off after it, exactly as the routes do), so delivery starts at once. The
source's position is kept in the connection's config under `receive_cursor`: it is one short string per
connection, written after the messages before it were committed, and needs no table of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select, update

from chatbox.domain.errors import AuthenticationError, ConflictError
from chatbox.domain.normalized import InboundMessage
from chatbox.ports.queue import DeliveryQueue
from chatbox.services.inbound import accept_inbound
from chatbox.store.database import Database
from chatbox.store.models import Connection

log = logging.getLogger(__name__)

RECEIVE_CURSOR = "receive_cursor"


class ConnectionArchivedError(AuthenticationError):
    """The connection is no longer active: its source must stop (the host stops it on its next round)."""


class ConnectionSink:
    """`InboundSink` for one connection. Thread-safe: each call opens its own session.

    Raises (accept): ConnectionArchivedError when the connection was archived meanwhile; a database error
    when nothing was committed. Messages for an archived mailbox are dropped (and confirmed), as the webhook
    route drops them: no later try could store them.
    """

    def __init__(self, db: Database, queue: DeliveryQueue, connection_id: str) -> None:
        self.db = db
        self.queue = queue
        self.connection_id = connection_id

    def accept(self, messages: Sequence[InboundMessage]) -> None:
        with self.db.session() as db:
            for message in messages:
                try:
                    accept_inbound(db, self.queue, self.connection_id, message)
                except ConflictError as exc:
                    log.info("dropped live inbound for connection %s: %s", self.connection_id, exc.message)
                    return
                except AuthenticationError as exc:
                    raise ConnectionArchivedError(f"connection {self.connection_id} is not active") from exc

    def cursor(self) -> str | None:
        with self.db.session() as db:
            config = db.scalar(select(Connection.config).where(Connection.id == self.connection_id))
        value = (config or {}).get(RECEIVE_CURSOR)
        return value if isinstance(value, str) else None

    def save_cursor(self, value: str) -> None:
        with self.db.session() as db, Database.write_lock_for(db):
            # The row stays locked until the commit, so a concurrent update of the connection (a PATCH) is not lost.
            config = db.scalar(select(Connection.config).where(Connection.id == self.connection_id).with_for_update())
            if config is None:
                return
            db.execute(
                update(Connection)
                .where(Connection.id == self.connection_id)
                .values(config={**config, RECEIVE_CURSOR: value})
            )
            db.commit()
