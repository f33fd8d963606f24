"""The inbound route: container connectors (and anything else holding an inbound token) post here.

It is the hottest route. Tokens already proven valid are remembered (by hash) so a request costs
one trip to the database thread; the accept itself re-reads the connection, so archiving one
still takes effect at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chatbox.domain.errors import AuthenticationError
from chatbox.domain.ids import hash_token
from chatbox.domain.normalized import AcceptResult, InboundMessage
from chatbox.runtime import Runtime
from chatbox.services.inbound import accept_inbound, authenticate_inbound
from chatbox.web.deps import RuntimeDep

router = APIRouter(prefix="/v1", tags=["inbound"])
T = TypeVar("T")

_inbound_bearer = HTTPBearer(auto_error=False, scheme_name="InboundToken", description="The connection's inbound token")


class KnownTokens:
    """(connection id, token hash) pairs already authenticated; bounded, least recently used out first."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, pair: tuple[str, str]) -> bool:
        with self._lock:
            if pair in self._pairs:
                self._pairs.move_to_end(pair)
                return True
            return False

    def add(self, pair: tuple[str, str]) -> None:
        with self._lock:
            self._pairs[pair] = None
            while len(self._pairs) > self.capacity:
                self._pairs.popitem(last=False)


_known = KnownTokens()


async def _in_db_thread(runtime: Runtime, function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(runtime.db.executor, function, *args)


def _authenticate(runtime: Runtime, connection_id: str, token: str) -> None:
    with runtime.db.session() as db:
        authenticate_inbound(db, connection_id, token)


def _accept(runtime: Runtime, connection_id: str, body: InboundMessage) -> AcceptResult:
    with runtime.db.session() as db:
        return accept_inbound(db, runtime.queue, connection_id, body)


async def authenticated_connection_id(
    connection_id: str,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_inbound_bearer)],
) -> str:
    """Authenticate before the body is validated, so a wrong token is a 401 whatever the body."""
    if credentials is None:
        raise AuthenticationError("missing bearer token: send `Authorization: Bearer <inbound_token>`")
    pair = (connection_id, hash_token(credentials.credentials))
    if pair not in _known:
        await _in_db_thread(runtime, _authenticate, runtime, connection_id, credentials.credentials)
        _known.add(pair)
    return connection_id


@router.post(
    "/connections/{connection_id}/messages",
    status_code=202,
    summary="Accept one normalized inbound message (idempotent on external_message_id)",
    responses={401: {"description": "Wrong or missing inbound token"}, 409: {"description": "Mailbox archived"}},
)
async def post_inbound_message(
    body: InboundMessage,
    runtime: RuntimeDep,
    connection_id: Annotated[str, Depends(authenticated_connection_id)],
) -> AcceptResult:
    return await _in_db_thread(runtime, _accept, runtime, connection_id, body)
