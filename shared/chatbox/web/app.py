"""The ASGI app factory. Functions compose only the routers they serve; `chatbox dev` composes them all."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI

from chatbox import __version__, metrics
from chatbox.runtime import Runtime
from chatbox.services.mailboxes import delivery_counts
from chatbox.web.errors import install_error_handlers
from chatbox.web.middleware import BodySizeLimitMiddleware, MetricsMiddleware
from chatbox.web.routes import connections, credentials, health, inbound, ingest, mailboxes

API_ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    mailboxes.router,
    connections.router,
    credentials.router,
    inbound.router,
    ingest.router,
)

DESCRIPTION = """\
chatbox puts Signal, Telegram, Discord and Slack behind one API for agents.
Every `/v1` route takes `Authorization: Bearer <api_key>`. Errors are JSON `{"code", "message"}`.
Lists paginate with `limit` and `cursor` (pass back `next_cursor`).
"""


def create_app(runtime: Runtime, routers: Sequence[APIRouter] = API_ROUTERS, *, mcp: bool = True) -> FastAPI:
    """The app: `routers`, plus the MCP endpoints (`/mcp/{mailbox_id}`) unless `mcp=False`."""
    app = FastAPI(title="chatbox", version=__version__, description=DESCRIPTION)
    app.state.runtime = runtime
    for router in routers:
        app.include_router(router)
    if mcp:
        # Imported here so an API-only composition never loads the MCP SDK.
        from chatbox.mcp.server import mcp_routes

        app.router.routes.extend(mcp_routes(runtime))
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(MetricsMiddleware)
    _register_queue_depth(runtime)
    return app


def _register_queue_depth(runtime: Runtime) -> None:
    def read() -> dict[str, int]:
        with runtime.db.session() as db:
            return delivery_counts(db)

    metrics.set_queue_depth_reader(read)
