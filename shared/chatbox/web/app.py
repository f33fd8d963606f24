"""The REST face: a FastAPI app of the routers a root serves (`chatbox.asgi` adds the MCP face beside it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from chatbox import __version__
from chatbox.runtime import Runtime
from chatbox.web.errors import install_error_handlers
from chatbox.web.ingest_paths import INBOUND_ROUTE, INGEST_ROUTE
from chatbox.web.lazy import LazyRoutes
from chatbox.web.middleware import BodySizeLimitMiddleware, MetricsMiddleware
from chatbox.web.openapi import install_platform_openapi

DESCRIPTION = """\
chatbox puts Signal, Telegram, Discord and Slack behind one API for agents.
Every `/v1` route takes `Authorization: Bearer <api_key>`. Errors are JSON `{"code", "message"}`.
Lists paginate with `limit` and `cursor` (pass back `next_cursor`).
"""


# Route templates, and how to build the app that serves them when one of their requests first arrives.
HandedOn = tuple[Sequence[str], Callable[[], ASGIApp]]


class ChatboxAPI(FastAPI):
    """A FastAPI app whose hot routes, when it serves them, are taken by the fast lane (`chatbox.web.fast_ingest`)
    before FastAPI sees the request (its per-request telemetry check, middleware, exception handlers and router);
    everything else goes through FastAPI as before."""

    def __init__(
        self, runtime: Runtime, *, ingest: bool, inbound: bool, handed_on: HandedOn | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self.state.runtime = runtime
        self.fast_routes = (ingest, inbound)
        self.handed_on = handed_on
        self.served: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.served is None:
            ingest, inbound = self.fast_routes
            served: ASGIApp = super().__call__
            if ingest or inbound:
                # Loaded with the first request of an app that has a lane, never by one without (the api function).
                from chatbox.web.fast_ingest import FastIngest

                served = FastIngest(served, self.state.runtime, ingest=ingest, inbound=inbound)
            if self.handed_on is not None:
                served = LazyRoutes(served, *self.handed_on)
            self.served = served
        await self.served(scope, receive, send)


def _serves(routers: Sequence[APIRouter], template: str) -> bool:
    """Whether one of `routers` declares `POST template` (the lane takes only routes the app serves)."""
    return any(
        getattr(route, "path", None) == template and "POST" in getattr(route, "methods", ())
        for router in routers
        for route in router.routes
    )


def create_api(
    runtime: Runtime,
    routers: Sequence[APIRouter] | None = None,
    *,
    fast_lane: bool = True,
    handed_on: HandedOn | None = None,
) -> FastAPI:
    """The REST app of `routers` (all of `API_ROUTERS` by default), with JSON errors, the body-size limit and
    request metrics; its hot routes in the fast lane unless `fast_lane=False` (what the lane's tests compare
    it with). `handed_on`: route templates whose requests go to an app built on the first of them instead
    (`chatbox.web.lazy.LazyRoutes`)."""
    if routers is None:
        # Imported here so a function that serves a few routes (inbound) never loads the management routers.
        from chatbox.web.api_routers import API_ROUTERS

        routers = API_ROUTERS
    app = ChatboxAPI(
        runtime,
        ingest=fast_lane and _serves(routers, INGEST_ROUTE),
        inbound=fast_lane and _serves(routers, INBOUND_ROUTE),
        handed_on=handed_on,
        title="chatbox",
        version=__version__,
        description=DESCRIPTION,
    )
    for router in routers:
        app.include_router(router)
    install_error_handlers(app)
    install_platform_openapi(app, runtime.platforms)
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(MetricsMiddleware)
    return app
