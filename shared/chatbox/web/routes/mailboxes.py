"""/v1/mailboxes: create, list, read, update, archive; health and unpause."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from chatbox.domain.schemas import (
    ChatList,
    MailboxCreate,
    MailboxCreated,
    MailboxHealth,
    MailboxPublic,
    MailboxUpdate,
    Page,
    RedriveResult,
)
from chatbox.services import focus, mailboxes
from chatbox.web.declared_routes import declared_router
from chatbox.web.deps import DEFAULT_PAGE, CurrentAccount, Cursor, Limit, RuntimeDep, SessionDep
from chatbox.web.errors import THROTTLED_RESPONSES, error_responses
from chatbox.web.presenters import chat_public, mailbox_public

router = declared_router(prefix="/v1/mailboxes", tags=["mailboxes"], responses=THROTTLED_RESPONSES)


@router.post(
    "",
    status_code=201,
    summary="Create a mailbox; the MCP token is shown once",
    responses=error_responses(
        400,
        401,
        409,
        413,
        422,
        s409="`quota_exceeded`: the account has CHATBOX_MAX_MAILBOXES_PER_ACCOUNT mailboxes that are not archived",
    ),
)
def create_mailbox(body: MailboxCreate, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep) -> MailboxCreated:
    created = mailboxes.create_mailbox(db, account, body, policy=runtime.address_policy, limits=runtime.account_limits)
    public = mailbox_public(created.mailbox, runtime.settings)
    return MailboxCreated(**public.model_dump(), mcp_token=created.mcp_token)


@router.get("", summary="List mailboxes (archived ones only when asked)", responses=error_responses(401, 422))
def list_mailboxes(
    db: SessionDep,
    account: CurrentAccount,
    runtime: RuntimeDep,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
    include_archived: bool = False,
) -> Page[MailboxPublic]:
    rows, next_cursor = mailboxes.list_mailboxes(
        db, account, limit=limit, cursor=cursor, include_archived=include_archived
    )
    return Page(items=[mailbox_public(m, runtime.settings) for m in rows], next_cursor=next_cursor)


@router.get("/{mailbox_id}", summary="Read a mailbox", responses=error_responses(401, 404))
def get_mailbox(mailbox_id: str, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep) -> MailboxPublic:
    return mailbox_public(mailboxes.get_mailbox(db, account, mailbox_id), runtime.settings)


@router.put(
    "/{mailbox_id}",
    summary="Update name, webhook_url, templates or credential references",
    responses=error_responses(400, 401, 404, 409, 413, 422),
)
def update_mailbox(
    mailbox_id: str, body: MailboxUpdate, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep
) -> MailboxPublic:
    updated = mailboxes.update_mailbox(db, runtime.queue, account, mailbox_id, body, policy=runtime.address_policy)
    return mailbox_public(updated, runtime.settings)


@router.delete("/{mailbox_id}", summary="Archive a mailbox", responses=error_responses(401, 404))
def archive_mailbox(mailbox_id: str, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep) -> MailboxPublic:
    return mailbox_public(mailboxes.archive_mailbox(db, account, mailbox_id), runtime.settings)


@router.get("/{mailbox_id}/health", summary="Delivery health of a mailbox", responses=error_responses(401, 404))
def mailbox_health(mailbox_id: str, db: SessionDep, account: CurrentAccount) -> MailboxHealth:
    return mailboxes.mailbox_health(db, account, mailbox_id)


@router.post("/{mailbox_id}/unpause", summary="Resume a paused mailbox", responses=error_responses(401, 404, 409))
def unpause_mailbox(mailbox_id: str, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep) -> MailboxPublic:
    return mailbox_public(mailboxes.unpause_mailbox(db, runtime.queue, account, mailbox_id), runtime.settings)


@router.post(
    "/{mailbox_id}/redrive", summary="Re-queue the mailbox's dead letters", responses=error_responses(401, 404, 409)
)
def redrive_mailbox(mailbox_id: str, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep) -> RedriveResult:
    return RedriveResult(requeued=mailboxes.redrive_mailbox(db, runtime.queue, account, mailbox_id))


@router.get(
    "/{mailbox_id}/chats",
    summary="List a mailbox's chats, named as the mailbox MCP server names them",
    responses=error_responses(401, 404, 422),
)
def list_chats(
    mailbox_id: str,
    db: SessionDep,
    account: CurrentAccount,
    platform: Annotated[str | None, Query(max_length=32, description="Only this platform's chats")] = None,
) -> ChatList:
    mailbox = mailboxes.get_mailbox(db, account, mailbox_id)
    chats = focus.list_chats(db, mailbox.id, platform=platform, include_muted=True)
    return ChatList(items=[chat_public(c) for c in chats])
