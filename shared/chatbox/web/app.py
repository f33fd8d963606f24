"""The REST face: a FastAPI app of the routers a root serves (`chatbox.asgi` adds the MCP face beside it)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI

from chatbox import __version__
from chatbox.runtime import Runtime
from chatbox.web.errors import install_error_handlers
from chatbox.web.middleware import BodySizeLimitMiddleware, MetricsMiddleware
from chatbox.web.openapi import install_platform_openapi

DESCRIPTION = """\
chatbox puts Signal, Telegram, Discord and Slack behind one API for agents.
Every `/v1` route takes `Authorization: Bearer <api_key>`. Errors are JSON `{"code", "message"}`.
Lists paginate with `limit` and `cursor` (pass back `next_cursor`).
"""


def create_api(runtime: Runtime, routers: Sequence[APIRouter] | None = None) -> FastAPI:
    """The REST app of `routers` (all of `API_ROUTERS` by default), with JSON errors, the body-size limit and
    request metrics."""
    if routers is None:
        # Imported here so a function that serves a few routes (inbound) never loads the management routers.
        from chatbox.web.api_routers import API_ROUTERS

        routers = API_ROUTERS
    app = FastAPI(title="chatbox", version=__version__, description=DESCRIPTION)
    app.state.runtime = runtime
    for router in routers:
        app.include_router(router)
    install_error_handlers(app)
    install_platform_openapi(app, runtime.platforms)
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(MetricsMiddleware)
    return app
