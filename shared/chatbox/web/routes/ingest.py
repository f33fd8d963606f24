"""The ingest route: webhook-mode platforms push their native events to `POST /v1/ingest/{platform}/{connection_id}`.

Two pure translations around the core's `IngestDispatcher.dispatch_webhook` (which documents the
statuses): the request in, the reply out. Which platforms exist, and the headers that prove a push's
origin, come from the registered platform specs (see `chatbox.web.openapi`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response

from chatbox.ports.ingest import WebhookRequest
from chatbox.runtime import Runtime
from chatbox.services.throttle import client_address
from chatbox.web.errors import error_responses

if TYPE_CHECKING:
    # Only named here; the ingest path loads with the runtime's dispatcher, on the first push (not on the api
    # function's cold start, which documents this route but serves none).
    from chatbox.services.ingest import IngestReply

router = APIRouter(prefix="/v1", tags=["ingest"])


async def to_webhook_request(request: Request) -> WebhookRequest:
    return WebhookRequest(request.headers, await request.body())


def to_response(reply: IngestReply) -> Response:
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=reply.headers)


@router.post(
    "/ingest/{platform}/{connection_id}",
    summary="Receive a webhook-mode platform's push (verified by the platform's secret token or signature)",
    response_class=Response,
    responses={
        200: {"description": "Taken (or deliberately ignored); Slack's url_verification gets its challenge"},
        **error_responses(
            400,
            401,
            403,
            404,
            413,
            s400="Not one of the platform's events (not JSON, nested too deep, not an update)",
            s401="Unknown connection, or no proof of origin",
            s403="Wrong secret token or signature, or a stale timestamp",
            s404="This deployment serves no such platform",
        ),
        429: {
            **error_responses(
                429, s429="Too many failed proofs from this address for this connection lately; see Retry-After"
            )[429],
            "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
        },
    },
)
async def ingest_webhook(platform: str, connection_id: str, request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    reply = await runtime.ingest.dispatch_webhook(
        platform, connection_id, await to_webhook_request(request), client=client_address(request.client)
    )
    return to_response(reply)
