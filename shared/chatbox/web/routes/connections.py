"""Connections of a mailbox: one per platform; the inbound token is shown once."""

from __future__ import annotations

from chatbox.domain.schemas import (
    ConnectionCreate,
    ConnectionCreated,
    ConnectionPublic,
    ConnectionUpdate,
    InboundTokenRotated,
    Page,
)
from chatbox.services import connections
from chatbox.web.declared_routes import declared_router
from chatbox.web.deps import DEFAULT_PAGE, CurrentAccount, Cursor, Limit, RuntimeDep, SessionDep
from chatbox.web.errors import THROTTLED_RESPONSES, error_responses
from chatbox.web.presenters import connection_public

router = declared_router(prefix="/v1", tags=["connections"], responses=THROTTLED_RESPONSES)


@router.post(
    "/mailboxes/{mailbox_id}/connections",
    status_code=201,
    summary="Attach a platform to a mailbox",
    responses=error_responses(
        400,
        401,
        404,
        409,
        413,
        422,
        502,
        s409="`conflict`: the platform already has an active connection on the mailbox, or the mailbox is archived; "
        "`quota_exceeded`: its secrets would take the account over CHATBOX_MAX_CREDENTIALS_PER_ACCOUNT",
    ),
)
def create_connection(
    mailbox_id: str, body: ConnectionCreate, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep
) -> ConnectionCreated:
    created = connections.create_connection(
        db,
        runtime.vault,
        runtime.platforms,
        account,
        mailbox_id,
        body,
        public_url=runtime.settings.public_url,
        limits=runtime.account_limits,
        policy=runtime.connector_address_policy,
        pick_program_port=runtime.program_port,
    )
    public = connection_public(created.connection, runtime)
    return ConnectionCreated(**public.model_dump(), inbound_token=created.inbound_token)


@router.get(
    "/mailboxes/{mailbox_id}/connections",
    summary="List a mailbox's connections",
    responses=error_responses(401, 404, 422),
)
def list_connections(
    mailbox_id: str,
    db: SessionDep,
    account: CurrentAccount,
    runtime: RuntimeDep,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> Page[ConnectionPublic]:
    rows, next_cursor = connections.list_connections(db, account, mailbox_id, limit=limit, cursor=cursor)
    return Page(items=[connection_public(c, runtime) for c in rows], next_cursor=next_cursor)


@router.get("/connections/{connection_id}", summary="Read a connection", responses=error_responses(401, 404))
def get_connection(
    connection_id: str, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep
) -> ConnectionPublic:
    return connection_public(connections.get_connection(db, account, connection_id), runtime)


@router.delete("/connections/{connection_id}", summary="Archive a connection", responses=error_responses(401, 404))
def archive_connection(
    connection_id: str, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep
) -> ConnectionPublic:
    archived = connections.archive_connection(db, runtime.vault, runtime.platforms, account, connection_id)
    return connection_public(archived, runtime)


@router.patch(
    "/connections/{connection_id}",
    summary="Update a live connection's config or secrets (a new bot token is set up with the platform first)",
    responses=error_responses(
        400,
        401,
        404,
        409,
        413,
        422,
        502,
        s409="`conflict`: the connection is archived; `quota_exceeded`: new secret names would take the account over "
        "CHATBOX_MAX_CREDENTIALS_PER_ACCOUNT",
        s422="A malformed body, a required key removed, a refused outbound_url, or the platform refused the new "
        "credentials: nothing changed",
        s502="The platform could not be reached: nothing changed",
    ),
)
def update_connection(
    connection_id: str, body: ConnectionUpdate, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep
) -> ConnectionPublic:
    updated = connections.update_connection(
        db,
        runtime.vault,
        runtime.platforms,
        account,
        connection_id,
        body,
        public_url=runtime.settings.public_url,
        limits=runtime.account_limits,
        policy=runtime.connector_address_policy,
    )
    return connection_public(updated, runtime)


@router.post(
    "/connections/{connection_id}/rotate-inbound-token",
    summary="Replace the connection's inbound token; the new one is shown once and the old one stops working",
    responses=error_responses(401, 404, 409, s409="The connection is archived"),
)
def rotate_inbound_token(connection_id: str, db: SessionDep, account: CurrentAccount) -> InboundTokenRotated:
    token = connections.rotate_inbound_token(db, account, connection_id)
    return InboundTokenRotated(id=connection_id, inbound_token=token)
