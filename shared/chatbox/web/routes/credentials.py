"""/v1/credentials: secrets go in sealed and never come back out."""

from __future__ import annotations

from fastapi import Response

from chatbox.domain.schemas import CredentialCreate, CredentialPublic, CredentialUpdate, Page
from chatbox.services import credentials
from chatbox.web.declared_routes import declared_router
from chatbox.web.deps import DEFAULT_PAGE, CurrentAccount, Cursor, Limit, RuntimeDep, SessionDep
from chatbox.web.errors import THROTTLED_RESPONSES, error_responses
from chatbox.web.presenters import credential_public

router = declared_router(prefix="/v1/credentials", tags=["credentials"], responses=THROTTLED_RESPONSES)


@router.post(
    "",
    status_code=201,
    summary="Store a secret (sealed at rest; the value is never returned)",
    responses=error_responses(
        400,
        401,
        409,
        413,
        422,
        s409="`quota_exceeded`: the account holds CHATBOX_MAX_CREDENTIALS_PER_ACCOUNT credentials",
    ),
)
def create_credential(
    body: CredentialCreate, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep
) -> CredentialPublic:
    created = credentials.create_credential(db, runtime.vault, account, body, limits=runtime.account_limits)
    return credential_public(created)


@router.get("", summary="List credentials (names and kinds only)", responses=error_responses(401, 422))
def list_credentials(
    db: SessionDep, account: CurrentAccount, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
) -> Page[CredentialPublic]:
    rows, next_cursor = credentials.list_credentials(db, account, limit=limit, cursor=cursor)
    return Page(items=[credential_public(c) for c in rows], next_cursor=next_cursor)


@router.get("/{credential_id}", summary="Read a credential's metadata", responses=error_responses(401, 404))
def get_credential(credential_id: str, db: SessionDep, account: CurrentAccount) -> CredentialPublic:
    return credential_public(credentials.get_credential(db, account, credential_id))


@router.put(
    "/{credential_id}",
    summary="Rename a credential or replace its value",
    responses=error_responses(400, 401, 404, 413, 422),
)
def update_credential(
    credential_id: str, body: CredentialUpdate, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep
) -> CredentialPublic:
    return credential_public(credentials.update_credential(db, runtime.vault, account, credential_id, body))


@router.delete(
    "/{credential_id}",
    status_code=204,
    summary="Delete a credential nothing uses",
    responses=error_responses(401, 404, 409, s409="A mailbox or an active connection still uses it"),
)
def delete_credential(credential_id: str, db: SessionDep, account: CurrentAccount) -> Response:
    credentials.delete_credential(db, account, credential_id)
    return Response(status_code=204)
