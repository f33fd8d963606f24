"""An ASGI app with only the MCP routes: what the MCP Lambda function serves."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from chatbox.mcp.server import mcp_routes
from chatbox.runtime import Runtime
from chatbox.web.middleware import MetricsMiddleware


def create_mcp_app(runtime: Runtime) -> Starlette:
    """The MCP endpoints alone (no REST API), with request metrics. Needs no lifespan: each request
    runs its own session manager."""
    app = Starlette(routes=mcp_routes(runtime), middleware=[Middleware(MetricsMiddleware)])
    app.state.runtime = runtime
    return app
