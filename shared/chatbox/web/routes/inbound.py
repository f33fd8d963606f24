"""The inbound route: container connectors (and anything else holding an inbound token) post here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chatbox.errors import AuthenticationError
from chatbox.normalized import AcceptResult, InboundMessage
from chatbox.services.connections import authenticate_inbound
from chatbox.services.inbound import accept_inbound
from chatbox.store.models import Connection
from chatbox.web.deps import RuntimeDep, SessionDep

router = APIRouter(prefix="/v1", tags=["inbound"])

_inbound_bearer = HTTPBearer(auto_error=False, scheme_name="InboundToken", description="The connection's inbound token")


def inbound_connection(
    connection_id: str,
    db: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_inbound_bearer)],
) -> Connection:
    """Authenticate before the body is validated, so a wrong token is a 401 whatever the body."""
    if credentials is None:
        raise AuthenticationError("missing bearer token: send `Authorization: Bearer <inbound_token>`")
    return authenticate_inbound(db, connection_id, credentials.credentials)


@router.post(
    "/connections/{connection_id}/messages",
    status_code=202,
    summary="Accept one normalized inbound message (idempotent on external_message_id)",
    responses={401: {"description": "Wrong or missing inbound token"}, 409: {"description": "Mailbox archived"}},
)
def post_inbound_message(
    body: InboundMessage,
    db: SessionDep,
    runtime: RuntimeDep,
    connection: Annotated[Connection, Depends(inbound_connection)],
) -> AcceptResult:
    return accept_inbound(db, runtime.queue, connection, body)
