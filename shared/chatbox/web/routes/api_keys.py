"""/v1/api-keys: an account's API keys. A new key is shown once; a revoked one answers 401 on its next request."""

from __future__ import annotations

from fastapi import Response

from chatbox.domain.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, Page
from chatbox.services import accounts
from chatbox.store.models import ApiKey
from chatbox.web.declared_routes import declared_router
from chatbox.web.deps import DEFAULT_PAGE, CurrentAccount, Cursor, Limit, SessionDep
from chatbox.web.errors import THROTTLED_RESPONSES, error_responses
from chatbox.web.presenters import api_key_public

router = declared_router(prefix="/v1/api-keys", tags=["api-keys"], responses=THROTTLED_RESPONSES)


@router.post(
    "",
    status_code=201,
    summary="Create an API key; the key is shown once",
    responses=error_responses(
        400, 401, 409, 413, 422, s409="`quota_exceeded`: the account has 50 live API keys; revoke unused ones first"
    ),
)
def create_api_key(body: ApiKeyCreate, db: SessionDep, account: CurrentAccount) -> ApiKeyCreated:
    issued = accounts.issue_api_key(db, account, body.name)
    key = db.get(ApiKey, issued.key_id)
    assert key is not None  # just committed
    return ApiKeyCreated(**api_key_public(key).model_dump(), key=issued.secret)


@router.get("", summary="List the account's API keys (names and prefixes only)", responses=error_responses(401, 422))
def list_api_keys(
    db: SessionDep, account: CurrentAccount, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
) -> Page[ApiKeyPublic]:
    rows, next_cursor = accounts.list_api_keys(db, account, limit=limit, cursor=cursor)
    return Page(items=[api_key_public(k) for k in rows], next_cursor=next_cursor)


@router.delete(
    "/{key_id}",
    status_code=204,
    summary="Revoke an API key at once",
    responses=error_responses(
        401, 404, 409, s409="It is the account's last API key: create another one before revoking it"
    ),
)
def revoke_api_key(key_id: str, db: SessionDep, account: CurrentAccount) -> Response:
    accounts.revoke_api_key(db, key_id, account_id=account)
    return Response(status_code=204)
