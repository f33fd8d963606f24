"""The inbound route: container connectors (and anything else holding an inbound token) post here.

It only translates HTTP to the ingest dispatcher (`chatbox.services.ingest`) and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chatbox.domain.errors import AuthenticationError
from chatbox.domain.normalized import AcceptResult, InboundMessage
from chatbox.web.deps import ClientAddress, RuntimeDep
from chatbox.web.errors import THROTTLED_RESPONSES, error_responses

router = APIRouter(prefix="/v1", tags=["inbound"], responses=THROTTLED_RESPONSES)

_inbound_bearer = HTTPBearer(auto_error=False, scheme_name="InboundToken", description="The connection's inbound token")


@dataclass(frozen=True)
class InboundCaller:
    connection_id: str
    token: str


async def authenticated_caller(
    connection_id: str,
    runtime: RuntimeDep,
    client: ClientAddress,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_inbound_bearer)],
) -> InboundCaller:
    """Authenticate before the body is validated, so a wrong token is a 401 whatever the body."""
    if credentials is None:
        raise AuthenticationError("missing bearer token: send `Authorization: Bearer <inbound_token>`")
    await runtime.ingest.authenticate_posted(connection_id, credentials.credentials, client=client)
    return InboundCaller(connection_id, credentials.credentials)


@router.post(
    "/connections/{connection_id}/messages",
    status_code=202,
    summary="Accept one normalized inbound message (idempotent on external_message_id)",
    responses=error_responses(
        400,
        401,
        403,
        409,
        413,
        422,
        s401="Wrong or missing inbound token",
        s403="A webhook-mode platform's connection: that platform pushes to /v1/ingest instead",
        s409="The mailbox is archived",
    ),
)
async def post_inbound_message(
    body: InboundMessage,
    runtime: RuntimeDep,
    caller: Annotated[InboundCaller, Depends(authenticated_caller)],
) -> AcceptResult:
    return await runtime.ingest.accept_posted(caller.connection_id, body, token=caller.token)
