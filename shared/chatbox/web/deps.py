"""Request dependencies as `Annotated` aliases: the runtime, a database session, the calling account."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from chatbox.domain.errors import AuthenticationError
from chatbox.runtime import Runtime
from chatbox.services.accounts import authenticate_api_key
from chatbox.services.pagination import DEFAULT_LIMIT, MAX_LIMIT
from chatbox.services.throttle import Attempt, api_key_target, client_address


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    with runtime.db.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="An API key of your account")


async def get_client_address(request: Request) -> str:
    """The caller's address as failed-authentication throttling counts it (`chatbox.services.throttle`).
    Async only so FastAPI runs it inline rather than on a worker thread: it does no I/O."""
    return client_address(request.client)


ClientAddress = Annotated[str, Depends(get_client_address)]


def get_current_account(
    db: SessionDep,
    runtime: RuntimeDep,
    client: ClientAddress,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The account of the bearer API key: 401 for a wrong one, 429 while this client failed too often lately."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("missing bearer token: send `Authorization: Bearer <api_key>`")
    with runtime.auth_throttle.guard(Attempt(client, api_key_target(credentials.credentials))):
        return authenticate_api_key(db, credentials.credentials)


CurrentAccount = Annotated[str, Depends(get_current_account)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page")]
DEFAULT_PAGE = DEFAULT_LIMIT
