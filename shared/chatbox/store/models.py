"""The domain's tables. One migration history (chatbox/store/migrations) serves every backend."""

# No `from __future__ import annotations` here: SQLAlchemy would eval() each of the ~140 `Mapped[...]` strings when it
# maps the classes, which costs every cold start about 5 ms more than reading the annotations Python already built.

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chatbox.domain.schemas import DeliveryStatus
from chatbox.store.types import PortableJSON, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(40)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Credential(Base):
    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Mailbox(Base):
    __tablename__ = "mailboxes"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    templates: Mapped[dict[str, str]] = mapped_column(PortableJSON, default=dict)
    # No foreign key: mailbox and chat would reference each other, and chats are never deleted.
    focal_chat_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    mcp_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    signing_credential_id: Mapped[str | None] = mapped_column(ForeignKey("credentials.id"))
    webhook_auth_credential_id: Mapped[str | None] = mapped_column(ForeignKey("credentials.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Messages in a switch_chat recap; None: the deployment's CHATBOX_MCP_RECAP_MESSAGES.
    recap_messages: Mapped[int | None] = mapped_column(Integer)
    # Delivery health, kept with the mailbox so pausing is one row update.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Connection(Base):
    __tablename__ = "connections"
    __table_args__ = (
        # At most one active connection per platform per mailbox; archived ones are history. SQLite's copy has the
        # same WHERE (migration 0001 creates both; test_store.py's archived-connection tests hold it) but is not
        # declared here: a `sqlite_*` option makes SQLAlchemy import its SQLite dialect to check it, in every
        # process, Postgres deployments (the api function's cold start) included. No code creates tables from models.
        Index(
            "uq_connections_active_platform",
            "mailbox_id",
            "platform",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    mailbox_id: Mapped[str] = mapped_column(ForeignKey("mailboxes.id"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    # Secret name -> credential id; the values live sealed in `credentials`.
    secret_refs: Mapped[dict[str, str]] = mapped_column(PortableJSON, default=dict)
    inbound_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Chat(Base):
    __tablename__ = "chats"
    __table_args__ = (
        # One chat per address per mailbox, whichever connection carries it: a connection archived and recreated
        # for the same platform keeps the chat, its history and its focus; `connection_id` is the connection
        # that last carried it. (The older per-connection constraint is implied by it; it stays because
        # dropping it would rebuild the table on SQLite.)
        Index("uq_chats_mailbox_platform_external", "mailbox_id", "platform", "external_id", unique=True),
        UniqueConstraint("connection_id", "external_id", name="uq_chats_connection_external"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    mailbox_id: Mapped[str] = mapped_column(ForeignKey("mailboxes.id"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16), default="direct")
    muted: Mapped[bool] = mapped_column(Boolean, default=False)
    unread_count: Mapped[int] = mapped_column(Integer, default=0)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def address(self) -> str:
        """How agents and the API name a chat: `<platform>:<external_id>`."""
        return f"{self.platform}:{self.external_id}"


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # The idempotency key: a platform's message id is accepted once per connection and direction.
        UniqueConstraint("connection_id", "direction", "external_id", name="uq_messages_connection_external"),
        Index("ix_messages_chat_created", "chat_id", "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    chat_id: Mapped[str] = mapped_column(ForeignKey("chats.id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    direction: Mapped[str] = mapped_column(String(4))
    external_id: Mapped[str | None] = mapped_column(String(255))
    sender_id: Mapped[str | None] = mapped_column(String(255))
    sender_name: Mapped[str | None] = mapped_column(String(255))
    text: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(PortableJSON, default=list)
    reply_to_external_id: Mapped[str | None] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(32), default="message")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # An edit, delete or reaction event: the platform id of the message it concerns, and a reaction's emoji.
    target_external_id: Mapped[str | None] = mapped_column(String(255))
    reaction: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON, nullable=True)
    previous_text: Mapped[str | None] = mapped_column(Text)  # an edit event: its target's text before it
    # Set on the message itself once an edit or a deletion of it arrived (or the agent made one).
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "mailbox_id", name="uq_deliveries_message_mailbox"),
        Index("ix_deliveries_mailbox_status", "mailbox_id", "status"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"))
    mailbox_id: Mapped[str] = mapped_column(ForeignKey("mailboxes.id"))
    chat_id: Mapped[str] = mapped_column(ForeignKey("chats.id"))
    # A DeliveryStatus: pending -> delivered | dead; held while the mailbox is paused.
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.pending.value)
    # Set once the queue has the job; pending rows without it are what the sweeper re-sends.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Receives of its current queue message that returned it unattempted, behind an earlier message of its
    # chat that had to stay: they do not count towards the crash guard (`Deliverer.deliver`).
    deferrals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(PortableJSON, default=list)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QueueMessage(Base):
    """The local queue adapter's durable store: SQS semantics kept in the database (chatbox dev)."""

    __tablename__ = "queue_messages"
    __table_args__ = (
        Index("ix_queue_messages_queue_group", "queue", "group_id", "id"),
        Index("ix_queue_messages_queue_visible", "queue", "visible_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(64))
    group_id: Mapped[str] = mapped_column(String(128))
    deduplication_id: Mapped[str] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    visible_at: Mapped[datetime] = mapped_column(UTCDateTime)
    receive_count: Mapped[int] = mapped_column(Integer, default=0)
    receipt: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventSubscription(Base):
    """An integrator's subscription to the account's service events (`chatbox.services.events`)."""

    __tablename__ = "event_subscriptions"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(PortableJSON, default=list)
    signing_credential_id: Mapped[str | None] = mapped_column(ForeignKey("credentials.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ServiceEvent(Base):
    """The events outbox: written in the transaction of what caused it, fanned out to subscriptions later."""

    __tablename__ = "service_events"
    __table_args__ = (Index("ix_service_events_fanned_out", "fanned_out_at", "id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    mailbox_id: Mapped[str | None] = mapped_column(ID)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set once one EventDelivery per matching subscription exists.
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EventDelivery(Base):
    """One event on its way to one subscription: its attempts and when the next one is due."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id", name="uq_event_deliveries_event_subscription"),
        Index("ix_event_deliveries_status_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("service_events.id"))
    # No foreign key: deleting a subscription drops its deliveries in the same transaction.
    subscription_id: Mapped[str] = mapped_column(ID, index=True)
    # A DeliveryStatus: pending -> delivered | dead.
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.pending.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def table_of(model: type[Base]) -> Table:
    """A model's Core table, for hot paths that skip the ORM."""
    return cast(Table, model.__table__)


class OutboundSend(Base):
    """One send the agent asked for, recorded before the platform call (`chatbox.services.sending`).

    `status` is sending -> sent | failed | unknown: `sent` once every part went out (then `message_id` names the
    outbound message in the chat's history); `failed` when the platform refused or could not be reached
    (`parts_sent` may hold leading parts that went out); `unknown` when a request got no answer and chatbox could
    not find out. Only `sent` sends appear in recaps and read_chat. An `idempotency_key` is unique per mailbox;
    a key older than 24 h is released (set to NULL) when it is used again.
    """

    __tablename__ = "outbound_sends"
    __table_args__ = (UniqueConstraint("mailbox_id", "idempotency_key", name="uq_outbound_sends_mailbox_key"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    mailbox_id: Mapped[str] = mapped_column(ForeignKey("mailboxes.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_digest: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(ForeignKey("chats.id"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    status: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(String(255))
    options: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    parts_sent: Mapped[list[str]] = mapped_column(PortableJSON, default=list)
    parts_total: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[str | None] = mapped_column(ID)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    attempt_started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
