"""Liveness with a database check (no auth), and Prometheus metrics (loopback only, or a bearer token).

`/metrics` counts requests, inbound messages and deliveries across every account, so it is not public:
with `CHATBOX_METRICS_TOKEN` set it takes `Authorization: Bearer <token>` from anywhere; unset, it
answers only a client on loopback that no proxy relayed (`chatbox dev` scraped from the same machine).
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import text

from chatbox.domain.errors import AuthenticationError, ForbiddenError
from chatbox.services.mailboxes import delivery_counts, paused_mailbox_count
from chatbox.store.schema_version import SCHEMA_HEAD, database_revision
from chatbox.web.declared_routes import declared_router
from chatbox.web.deps import RuntimeDep
from chatbox.web.errors import error_responses

router = declared_router(tags=["operations"])

# The media type of Prometheus' text exposition, as documented; the route answers prometheus_client's exact content
# type. prometheus_client itself is imported by the route (it costs a Lambda cold start that never serves /metrics).
METRICS_MEDIA_TYPE = "text/plain"

# Headers a reverse proxy adds: a request carrying one came from further away than the loopback peer it arrived from.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

_metrics_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="MetricsToken",
    description="CHATBOX_METRICS_TOKEN; without one configured, /metrics answers loopback clients only",
)


class HealthPublic(BaseModel):
    status: str
    database: str
    # "ok", or why the database's schema is not the one this code expects (a deploy that did not migrate)
    schema_: str = Field(default="ok", alias="schema")


@router.get(
    "/health",
    summary="Liveness plus a database check",
    response_model=HealthPublic,
    responses={
        503: {"model": HealthPublic, "description": "The database does not answer, or its schema is not at head"}
    },
)
def health(runtime: RuntimeDep) -> JSONResponse:
    try:
        with runtime.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            revision = database_revision(connection)
    except Exception as exc:  # noqa: BLE001 - any database failure means "not healthy", reported as 503
        body = {"status": "unavailable", "database": f"error: {type(exc).__name__}", "schema": "unknown"}
        return JSONResponse(body, status_code=503)
    if revision != SCHEMA_HEAD:
        schema = (
            f"not at head: database at {revision or 'no revision'}, code expects {SCHEMA_HEAD} (run the migrations)"
        )
        return JSONResponse({"status": "unavailable", "database": "ok", "schema": schema}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok", "schema": "ok"})


def is_local_client(request: Request) -> bool:
    """Whether the peer is a loopback address and no proxy header says the request came from elsewhere."""
    if request.client is None or any(name in request.headers for name in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:  # not an IP address (a Unix socket, a test client's name)
        return False


def require_metrics_access(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_metrics_bearer)],
) -> None:
    """401 without the configured token; 403 to a non-local client when no token is configured."""
    token = runtime.settings.metrics_token
    if token:
        presented = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise AuthenticationError("send `Authorization: Bearer <CHATBOX_METRICS_TOKEN>` to read /metrics")
        return
    if not is_local_client(request):
        raise ForbiddenError("/metrics answers loopback clients only; set CHATBOX_METRICS_TOKEN to scrape it remotely")


@router.get(
    "/metrics",
    summary="Prometheus metrics (loopback clients, or `Authorization: Bearer <CHATBOX_METRICS_TOKEN>`)",
    response_class=Response,
    responses={
        200: {"content": {METRICS_MEDIA_TYPE: {"schema": {"type": "string"}}}},
        **error_responses(
            401,
            403,
            s401="CHATBOX_METRICS_TOKEN is set and was not presented",
            s403="No CHATBOX_METRICS_TOKEN is set and the client is not on loopback",
        ),
    },
    dependencies=[Depends(require_metrics_access)],
    # Appended to the MetricsToken requirement: or none at all (a loopback client without a configured token).
    openapi_extra={"security": [{}]},
)
def prometheus_metrics(runtime: RuntimeDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    from chatbox.adapters.prometheus_metrics import scrape

    def read_deliveries() -> dict[str, int]:
        with runtime.db.session() as db:
            return delivery_counts(db)

    def read_paused() -> int:
        with runtime.db.session() as db:
            return paused_mailbox_count(db)

    # What the database holds is read from this app's runtime, not a process global: apps in one process stay apart.
    return Response(scrape(read_deliveries, read_paused), media_type=CONTENT_TYPE_LATEST)
