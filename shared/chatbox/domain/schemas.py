"""Input and output shapes shared by the REST API, the CLI and the MCP faces (XCreate / XUpdate / XPublic)."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from chatbox.domain.untrusted import NoNul, refuse_nul

MAX_JSON_BYTES = 16_384
MAX_JSON_DEPTH = 32
MAX_TEMPLATES = 32
T = TypeVar("T")


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul]
# Secret values are sealed before they are stored, so any character may appear in them.
SecretValue = Annotated[str, StringConstraints(min_length=1, max_length=16_384)]
TemplateName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
TemplateText = Annotated[str, StringConstraints(max_length=8_192), NoNul]
SecretName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
# A reference to a resource by id; malformed ids are reported as unknown by the services.
ResourceRef = Annotated[str, StringConstraints(max_length=64)]


_http_url_adapter: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl)


def _http_url(value: str) -> str:
    if len(value) > 2048:
        raise ValueError("URL longer than 2048 characters")
    try:
        return str(_http_url_adapter.validate_python(value))
    except ValidationError as exc:
        raise ValueError("must be an absolute http:// or https:// URL") from exc


WebhookUrl = Annotated[str, AfterValidator(_http_url)]


def _check_json_value(value: Any, depth: int) -> None:
    """Refuse what a JSON column cannot store or the API cannot echo: deep nesting and NUL characters.

    `depth` counts the objects and arrays that enclose `value`, itself included when it is one.
    """
    if isinstance(value, str):
        refuse_nul(value)
        return
    if isinstance(value, dict | list) and depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key)
            _check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, depth + 1)


def _small_json(value: dict[str, Any]) -> dict[str, Any]:
    _check_json_value(value, 1)
    try:
        # Python's JSON parser accepts NaN and Infinity; JSON columns (and JSON clients) do not.
        encoded = json.dumps(value, allow_nan=False)
    except ValueError as exc:
        raise ValueError("must not contain NaN or Infinity") from exc
    if len(encoded) > MAX_JSON_BYTES:
        raise ValueError(f"larger than {MAX_JSON_BYTES} bytes as JSON")
    return value


SmallObject = Annotated[dict[str, Any], AfterValidator(_small_json)]


# A platform's name; which ones exist is up to the registered platform specs (`chatbox.ports.platforms`).
PlatformName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,31}$")]


class CredentialKind(StrEnum):
    hmac_signing = "hmac_signing"
    webhook_auth = "webhook_auth"
    mcp_proxy_auth = "mcp_proxy_auth"
    platform = "platform"


class ConnectionStatus(StrEnum):
    active = "active"
    archived = "archived"


class MailboxStatus(StrEnum):
    active = "active"
    paused = "paused"
    archived = "archived"


class DeliveryStatus(StrEnum):
    """Where a delivery stands: pending -> delivered | dead; held while its mailbox is paused or has no webhook_url."""

    pending = "pending"
    held = "held"
    delivered = "delivered"
    dead = "dead"


RecapSize = Annotated[
    int, Field(ge=0, le=100, description="Messages in a switch_chat recap (null: the deployment default)")
]


class StrictModel(BaseModel):
    """A request body. Built at import, not deferred: FastAPI validates a body through a `TypeAdapter` of
    `Annotated[Model, Field(alias=<parameter name>)]`, and a deferred model defers that adapter too, so it would be
    built on the first request, outside the `warnings.catch_warnings` FastAPI builds it in, and pydantic would warn
    that the alias (FastAPI's own, which FastAPI applies itself) has no effect there."""

    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    """What the API answers. Its validator and serializer are built when first used (`defer_build`): a cold start
    builds only those of the responses it sends, not those of every route's (the api function's import)."""

    model_config = ConfigDict(defer_build=True)


class MailboxCreate(StrictModel):
    name: Name
    webhook_url: WebhookUrl | None = None
    signing_credential_id: ResourceRef | None = None
    webhook_auth_credential_id: ResourceRef | None = None
    templates: dict[TemplateName, TemplateText] = Field(default_factory=dict, max_length=MAX_TEMPLATES)
    recap_messages: RecapSize | None = None


class MailboxUpdate(StrictModel):
    """Only the fields present are changed; `null` clears an optional field."""

    name: Name | None = None
    webhook_url: WebhookUrl | None = None
    signing_credential_id: ResourceRef | None = None
    webhook_auth_credential_id: ResourceRef | None = None
    templates: dict[TemplateName, TemplateText] | None = Field(default=None, max_length=MAX_TEMPLATES)
    recap_messages: RecapSize | None = None


class MailboxPublic(ResponseModel):
    id: str
    name: str
    webhook_url: str | None
    templates: dict[str, str]
    recap_messages: int | None = Field(
        description="Messages in a switch_chat recap; null: the deployment default (CHATBOX_MCP_RECAP_MESSAGES)"
    )
    focal_chat_id: str | None
    signing_credential_id: str | None
    webhook_auth_credential_id: str | None
    status: MailboxStatus
    mcp_url: str
    created_at: datetime
    updated_at: datetime


class MailboxCreated(MailboxPublic):
    mcp_token: str = Field(description="Shown once; only its hash is kept.")


class ConnectionCreate(StrictModel):
    platform: PlatformName = Field(description="One of the platforms this deployment serves (GET /v1/platforms).")
    config: SmallObject = Field(default_factory=dict)
    secrets: dict[SecretName, SecretValue] = Field(default_factory=dict, max_length=16)


class ConnectionPublic(ResponseModel):
    id: str
    mailbox_id: str
    platform: str
    config: dict[str, Any]
    secret_names: list[str]
    status: ConnectionStatus
    ingest_url: str
    created_at: datetime
    updated_at: datetime


class ConnectionCreated(ConnectionPublic):
    inbound_token: str = Field(description="Shown once; only its hash is kept.")


class CredentialCreate(StrictModel):
    name: Name
    kind: CredentialKind
    value: SecretValue


class CredentialUpdate(StrictModel):
    name: Name | None = None
    value: SecretValue | None = None


class CredentialPublic(ResponseModel):
    id: str
    name: str
    kind: CredentialKind
    created_at: datetime
    updated_at: datetime


class MailboxHealth(ResponseModel):
    status: MailboxStatus
    consecutive_failures: int
    delivered: int
    pending: int
    dead_letters: int
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


class RedriveResult(ResponseModel):
    requeued: int = Field(description="Dead deliveries put back on the queue")


class Page(ResponseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ConnectionFieldPublic(ResponseModel):
    name: str
    description: str
    required: bool


class PlatformPublic(ResponseModel):
    """A platform this deployment serves, and what a connection to it takes."""

    name: str
    label: str
    mode: str = Field(description="webhook (the platform pushes to ingest_url), long_lived, or container")
    summary: str
    secrets: list[ConnectionFieldPublic]
    config: list[ConnectionFieldPublic]
    send_options: dict[str, Any] = Field(description="JSON schema of the platform's send options")


class EventType(StrEnum):
    """The service events an integrator can subscribe to (`POST /v1/event-subscriptions`)."""

    new_chat = "new_chat"
    delivery_failed = "delivery_failed"
    message_dead_lettered = "message_dead_lettered"
    mailbox_paused = "mailbox_paused"
    mailbox_unpaused = "mailbox_unpaused"
    connection_error = "connection_error"


class EventSubscriptionCreate(StrictModel):
    url: WebhookUrl = Field(description="Where events are POSTed; the same address policy as mailbox webhooks.")
    events: list[EventType] = Field(min_length=1, max_length=len(EventType), description="The event types to receive")
    signing_credential_id: ResourceRef | None = Field(
        default=None, description="An hmac_signing credential: events carry Standard Webhooks signatures with it."
    )


class EventSubscriptionPublic(ResponseModel):
    id: str
    url: str
    events: list[EventType]
    signing_credential_id: str | None
    created_at: datetime
    updated_at: datetime


class ApiKeyCreate(StrictModel):
    name: Name


class ApiKeyPublic(ResponseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    created_at: datetime
    last_used_at: datetime | None = Field(description="Within a minute; null when never used")


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="Shown once; only its hash is kept.")


class ConnectionUpdate(StrictModel):
    """Only what is given changes: `config` keys are merged in, each of `secrets` replaces the secret of that name."""

    config: SmallObject = Field(default_factory=dict)
    secrets: dict[SecretName, SecretValue] = Field(default_factory=dict, max_length=16)


class InboundTokenRotated(ResponseModel):
    id: str = Field(description="The connection's id")
    inbound_token: str = Field(description="Shown once; the previous token stopped working.")


class ChatPublic(ResponseModel):
    """A chat as the API and the mailbox MCP server's list_chats both name it."""

    id: str = Field(description="`<platform>:<external_id>`, e.g. `telegram:123`: the chat_id of MCP tools")
    name: str | None
    type: str
    platform: str
    unread: int
    muted: bool
    focal: bool
    last_activity_at: datetime | None


class ChatList(ResponseModel):
    items: list[ChatPublic] = Field(description="Most recently active first (at most 200); muted chats included")
