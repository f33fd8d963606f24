"""The per-account admin MCP server: `/mcp/admin/{account_id}`, bearer = an API key of that account.

Agents administer their own messaging surface with it: mailboxes and their delivery health,
connections, muting chats, templates (validated, with a preview), unpausing and redriving. Each
tool checks the mailbox is the account's, then calls the service that does the work.
A wrong key answers 401; a valid key of another account than the path's answers 403.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import mcp_types as types
from mcp.server.lowlevel import Server
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chatbox.domain.errors import ForbiddenError
from chatbox.domain.rendering import VARIABLES, render, validate_templates
from chatbox.domain.schemas import (
    MAX_TEMPLATES,
    EventSubscriptionCreate,
    EventType,
    MailboxUpdate,
    ResourceRef,
    TemplateName,
    TemplateText,
    WebhookUrl,
)
from chatbox.mcp.endpoint import McpEndpoint, transport_security
from chatbox.mcp.registration import JsonAnswer, ServedTool, ToolTable
from chatbox.runtime import Runtime
from chatbox.services import accounts, connections, events, focus, mailboxes
from chatbox.services.throttle import api_key_target
from chatbox.store.models import EventSubscription

MailboxId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
ChatAddress = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=300)]

ADMIN_INSTRUCTIONS = (
    "This is chatbox's admin server for your account: it manages the mailboxes through which you are "
    "reachable on messaging platforms. list_mailboxes shows them; mailbox_health tells whether webhook "
    "deliveries reach you (a mailbox pauses itself after repeated failures - fix the receiver, then "
    "unpause_mailbox; redrive_dead_letters re-sends what gave up). mute_chat keeps a chat's messages out of "
    "the chat list; update_templates changes how messages are rendered to you (preview_template first); "
    "create_event_subscription has service events (new chats, failed deliveries, pauses) POSTed to a URL."
)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoInput(_Input):
    pass


class MailboxInput(_Input):
    mailbox_id: MailboxId = Field(description="A mailbox id (`mbx_…`) from list_mailboxes.")


class ChatInput(MailboxInput):
    chat_id: ChatAddress = Field(description="The chat id as list_chats shows it: `<platform>:<external_id>`.")


class TemplatesInput(MailboxInput):
    templates: dict[TemplateName, TemplateText] = Field(
        max_length=MAX_TEMPLATES,
        description="The complete set of templates (replaces the current one): focal_message, notification, "
        "ephemeral, focal_<event_type>, notification_<event_type>. Variables: " + ", ".join(f"${v}" for v in VARIABLES),
    )


class PreviewInput(MailboxInput):
    templates: dict[TemplateName, TemplateText] | None = Field(
        default=None,
        max_length=MAX_TEMPLATES,
        description="Templates to preview; default: the mailbox's current templates.",
    )
    focal: bool = Field(default=True, description="Render as the focal chat (focal_message) or not (notification).")
    event_type: str = Field(default="message", max_length=32, description="message, edit, reaction, ...")


class TailInput(MailboxInput):
    limit: int = Field(default=20, ge=1, le=200, description="How many of the latest deliveries.")


SubscriptionId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class SubscriptionInput(_Input):
    subscription_id: SubscriptionId = Field(description="An event subscription id (`esub_…`).")


class SubscriptionFields(_Input):
    url: WebhookUrl = Field(description="Where events are POSTed (the same address policy as mailbox webhooks).")
    events: list[EventType] = Field(
        min_length=1, max_length=len(EventType), description="Event types: " + ", ".join(e.value for e in EventType)
    )
    signing_credential_id: ResourceRef | None = Field(
        default=None, description="An hmac_signing credential id: events then carry Standard Webhooks signatures."
    )


class SubscriptionUpdateInput(SubscriptionFields):
    subscription_id: SubscriptionId = Field(description="An event subscription id (`esub_…`).")


@dataclass(frozen=True)
class AdminTool:
    """One admin tool: what it is called and does, its typed input, and the function answering it."""

    name: str
    description: str
    input_model: type[_Input]
    run: Callable[[Runtime, str, Any], dict[str, Any]]  # (runtime, account_id, validated input) -> structured answer
    read_only: bool

    def served(self, runtime: Runtime, account_id: str) -> ServedTool:
        """This tool bound to an authenticated account."""

        def call(arguments: Any) -> JsonAnswer:
            return JsonAnswer(self.run(runtime, account_id, arguments))

        return ServedTool(
            name=self.name,
            description=self.description,
            input_model=self.input_model,
            call=call,
            annotations=types.ToolAnnotations(read_only_hint=self.read_only, destructive_hint=False),
        )


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def run_list_mailboxes(runtime: Runtime, account_id: str, _args: NoInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        rows, _ = mailboxes.list_mailboxes(db, account_id, limit=200, cursor=None)
        return {
            "mailboxes": [
                {
                    "id": m.id,
                    "name": m.name,
                    "status": m.status,
                    "webhook_url": m.webhook_url,
                    "mcp_url": runtime.settings.mcp_url(m.id),
                }
                for m in rows
            ]
        }


def run_mailbox_health(runtime: Runtime, account_id: str, args: MailboxInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        return mailboxes.mailbox_health(db, account_id, args.mailbox_id).model_dump(mode="json")


def run_list_connections(runtime: Runtime, account_id: str, args: MailboxInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        rows, _ = connections.list_connections(db, account_id, args.mailbox_id, limit=200, cursor=None)
        return {
            "connections": [
                {"id": c.id, "platform": c.platform, "status": c.status, "created_at": _iso(c.created_at)} for c in rows
            ]
        }


def _set_muted(runtime: Runtime, account_id: str, args: ChatInput, muted: bool) -> dict[str, Any]:
    with runtime.db.session() as db:
        mailboxes.get_mailbox(db, account_id, args.mailbox_id)
        chat = focus.set_chat_muted(db, args.mailbox_id, args.chat_id, muted=muted)
        return {"chat_id": chat.address, "muted": chat.muted}


def run_mute_chat(runtime: Runtime, account_id: str, args: ChatInput) -> dict[str, Any]:
    return _set_muted(runtime, account_id, args, True)


def run_unmute_chat(runtime: Runtime, account_id: str, args: ChatInput) -> dict[str, Any]:
    return _set_muted(runtime, account_id, args, False)


def run_update_templates(runtime: Runtime, account_id: str, args: TemplatesInput) -> dict[str, Any]:
    update = MailboxUpdate(templates=args.templates)
    with runtime.db.session() as db:
        mailbox = mailboxes.update_mailbox(
            db, runtime.queue, account_id, args.mailbox_id, update, policy=runtime.address_policy
        )
        return {"mailbox_id": mailbox.id, "templates": mailbox.templates}


SAMPLE_VARIABLES = {
    "TEXT": "Are we still on for 3pm?",
    "SENDER_NAME": "Ada",
    "SENDER_ID": "4242",
    "CHAT_ID": "telegram:4242",
    "CHAT_NAME": "Ada",
    "CHAT_TYPE": "direct",
    "PLATFORM": "telegram",
    "TIMESTAMP": "2026-11-27T15:00:00+00:00",
    "UNREAD": "2",
    "CHAT_LIST": "Chats:\n* Ada (telegram:4242): 0 unread, focal\n- ops (slack:C024BE91L): 2 unread",
    "EVENT_TYPE": "message",
    "MESSAGE_ID": "msg_01JD3SAMPLE0000000000000000",
    "EXTERNAL_MESSAGE_ID": "4242:17",
    "REPLY_TO": "",
    "ATTACHMENTS": "",
    "MAILBOX_NAME": "agent",
}


def run_preview_template(runtime: Runtime, account_id: str, args: PreviewInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        mailbox = mailboxes.get_mailbox(db, account_id, args.mailbox_id)
        templates = args.templates if args.templates is not None else mailbox.templates
    validate_templates(templates)
    variables = {**SAMPLE_VARIABLES, "EVENT_TYPE": args.event_type, "MAILBOX_NAME": mailbox.name}
    rendered = render(templates, focal=args.focal, event_type=args.event_type, variables=variables)
    return {"content": rendered.content, "ephemeral": rendered.ephemeral}


def run_unpause(runtime: Runtime, account_id: str, args: MailboxInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        mailbox = mailboxes.unpause_mailbox(db, runtime.queue, account_id, args.mailbox_id)
        return {"mailbox_id": mailbox.id, "status": mailbox.status}


def run_redrive(runtime: Runtime, account_id: str, args: MailboxInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        return {"requeued": mailboxes.redrive_mailbox(db, runtime.queue, account_id, args.mailbox_id)}


def run_tail_deliveries(runtime: Runtime, account_id: str, args: TailInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        mailboxes.get_mailbox(db, account_id, args.mailbox_id)
        rows = mailboxes.recent_deliveries(db, args.mailbox_id, limit=args.limit)
        return {
            "deliveries": [
                {
                    "id": d.id,
                    "message_id": d.message_id,
                    "status": d.status,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                    "updated_at": _iso(d.updated_at),
                }
                for d in rows
            ]
        }


def _subscription(subscription: EventSubscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "url": subscription.url,
        "events": list(subscription.events),
        "signing_credential_id": subscription.signing_credential_id,
        "created_at": _iso(subscription.created_at),
        "updated_at": _iso(subscription.updated_at),
    }


def _subscription_body(args: SubscriptionFields) -> EventSubscriptionCreate:
    return EventSubscriptionCreate(url=args.url, events=args.events, signing_credential_id=args.signing_credential_id)


def run_list_event_subscriptions(runtime: Runtime, account_id: str, _args: NoInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        rows, _ = events.list_subscriptions(db, account_id, limit=200, cursor=None)
        return {"event_subscriptions": [_subscription(s) for s in rows]}


def run_create_event_subscription(runtime: Runtime, account_id: str, args: SubscriptionFields) -> dict[str, Any]:
    with runtime.db.session() as db:
        created = events.create_subscription(db, account_id, _subscription_body(args), policy=runtime.address_policy)
        return _subscription(created)


def run_get_event_subscription(runtime: Runtime, account_id: str, args: SubscriptionInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        return _subscription(events.get_subscription(db, account_id, args.subscription_id))


def run_update_event_subscription(runtime: Runtime, account_id: str, args: SubscriptionUpdateInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        replaced = events.replace_subscription(
            db, account_id, args.subscription_id, _subscription_body(args), policy=runtime.address_policy
        )
        return _subscription(replaced)


def run_delete_event_subscription(runtime: Runtime, account_id: str, args: SubscriptionInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        events.delete_subscription(db, account_id, args.subscription_id)
    return {"deleted": args.subscription_id}


ADMIN_TOOLS: tuple[AdminTool, ...] = (
    AdminTool(
        "list_mailboxes",
        "Your account's mailboxes with status, webhook URL and MCP URL.",
        NoInput,
        run_list_mailboxes,
        True,
    ),
    AdminTool(
        "mailbox_health",
        "Delivery health: status, failure streak, delivered/pending/dead counts, last error.",
        MailboxInput,
        run_mailbox_health,
        True,
    ),
    AdminTool("list_connections", "The mailbox's platform connections.", MailboxInput, run_list_connections, True),
    AdminTool(
        "mute_chat",
        "Mute a chat: it leaves the chat list (its messages are still stored and delivered).",
        ChatInput,
        run_mute_chat,
        False,
    ),
    AdminTool("unmute_chat", "Unmute a chat.", ChatInput, run_unmute_chat, False),
    AdminTool(
        "update_templates",
        "Replace the mailbox's templates (validated; preview_template first).",
        TemplatesInput,
        run_update_templates,
        False,
    ),
    AdminTool(
        "preview_template",
        "Render templates on a sample message without changing anything.",
        PreviewInput,
        run_preview_template,
        True,
    ),
    AdminTool(
        "unpause_mailbox",
        "Resume a paused mailbox; held messages are sent, each chat in order.",
        MailboxInput,
        run_unpause,
        False,
    ),
    AdminTool(
        "redrive_dead_letters",
        "Re-send the mailbox's dead deliveries with a fresh set of attempts.",
        MailboxInput,
        run_redrive,
        False,
    ),
    AdminTool(
        "tail_deliveries", "The latest deliveries: status, attempts, last error.", TailInput, run_tail_deliveries, True
    ),
    AdminTool(
        "list_event_subscriptions",
        "Where your account's service events (new_chat, delivery_failed, mailbox_paused, ...) are POSTed.",
        NoInput,
        run_list_event_subscriptions,
        True,
    ),
    AdminTool(
        "create_event_subscription",
        "Subscribe a URL to service events; each is POSTed as {id, type, occurred_at, account_id, mailbox_id, data}.",
        SubscriptionFields,
        run_create_event_subscription,
        False,
    ),
    AdminTool("get_event_subscription", "One event subscription.", SubscriptionInput, run_get_event_subscription, True),
    AdminTool(
        "update_event_subscription",
        "Replace an event subscription's URL, event types and signing credential.",
        SubscriptionUpdateInput,
        run_update_event_subscription,
        False,
    ),
    AdminTool(
        "delete_event_subscription",
        "Delete an event subscription; its undelivered events are dropped.",
        SubscriptionInput,
        run_delete_event_subscription,
        False,
    ),
)


def build_admin_server(runtime: Runtime, account_id: str) -> Server[Any]:
    """A low-level MCP server for one authenticated account (built per request; cheap)."""
    table = ToolTable([tool.served(runtime, account_id) for tool in ADMIN_TOOLS], caller=f"account {account_id}")
    return table.server("chatbox-admin", instructions=ADMIN_INSTRUCTIONS)


def admin_endpoint(runtime: Runtime) -> McpEndpoint[str]:
    """The endpoint behind `/mcp/admin/{account_id}`: the bearer must be an API key of that account."""

    def authenticate(path_params: Mapping[str, Any], token: str) -> str:
        with runtime.db.session() as db:
            owner = accounts.authenticate_api_key(db, token)
        if owner != str(path_params.get("account_id", "")):
            raise ForbiddenError("this API key belongs to another account")
        return owner

    return McpEndpoint(
        realm="chatbox-admin-mcp",
        credential="api_key",
        authenticate=authenticate,
        build_server=partial(build_admin_server, runtime),
        security=lambda: transport_security(runtime.settings),
        throttle=runtime.auth_throttle,
        # An API key's failures count here as on the REST API: per (client, key prefix), and per client.
        throttle_target=lambda _path_params, token: api_key_target(token),
    )
