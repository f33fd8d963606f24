"""The ASGI apps the roots serve, composed from the faces.

`create_app` is everything `chatbox dev` and `chatbox api` serve (REST + MCP on one app); each
Lambda function composes only its share (`create_app(runtime, routers, mcp=False)`,
`create_mcp_app(runtime)`), so a cold start loads only the face it serves.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware

from chatbox.runtime import Runtime
from chatbox.web.app import HandedOn, create_api
from chatbox.web.middleware import MetricsMiddleware


def create_app(
    runtime: Runtime,
    routers: Sequence[APIRouter] | None = None,
    *,
    mcp: bool = True,
    fast_lane: bool = True,
    handed_on: HandedOn | None = None,
) -> FastAPI:
    """The REST app of `routers` (all of them by default), plus the MCP endpoints (`/mcp/{mailbox_id}`,
    `/mcp/admin/{account_id}`) unless `mcp=False`; the hot ingest routes in the fast lane
    (`chatbox.web.fast_ingest`) unless `fast_lane=False`; the requests of `handed_on`'s route templates to the app
    it builds on the first of them."""
    app = create_api(runtime, routers, fast_lane=fast_lane, handed_on=handed_on)
    if mcp:
        # Imported here so an API-only composition never loads the MCP SDK.
        from chatbox.mcp.routes import mcp_routes

        app.router.routes.extend(mcp_routes(runtime))
    return app


def create_mcp_app(runtime: Runtime) -> Starlette:
    """The MCP endpoints alone (no REST API), with request metrics: what the MCP function serves. Needs no
    lifespan: each request runs its own session manager."""
    from chatbox.mcp.routes import mcp_routes

    app = Starlette(routes=mcp_routes(runtime), middleware=[Middleware(MetricsMiddleware)])
    app.state.runtime = runtime
    return app
