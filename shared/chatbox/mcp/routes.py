"""The MCP face's routes: the admin server per account and the mailbox server per mailbox.

Plain `Route`s rather than a `Mount`, which would redirect the bare path to a trailing slash; both
spellings are served.

Example:
    ```python
    app = Starlette(routes=mcp_routes(runtime))  # or chatbox.asgi.create_app(runtime), which includes them
    ```
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Scope

from chatbox.mcp.admin import admin_endpoint
from chatbox.mcp.endpoint import MCP_METHODS
from chatbox.mcp.mailbox import mailbox_endpoint
from chatbox.runtime import Runtime


def mcp_routes(runtime: Runtime) -> list[BaseRoute]:
    """`/mcp/admin/{account_id}` and `/mcp/{mailbox_id}`, each with and without a trailing slash."""
    return [
        *_both_spellings("/mcp/admin/{account_id}", admin_endpoint(runtime)),
        *_both_spellings("/mcp/{mailbox_id}", mailbox_endpoint(runtime)),
    ]


class TemplatedRoute(Route):
    """A `Route` that names itself in the scope it matches, as FastAPI's own routes do: the request metrics
    label a request by its route's template (`/mcp/{mailbox_id}`), never by the raw path of one mailbox, and
    FastAPI's router sets `scope["route"]` only for its own routes."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def _both_spellings(path: str, endpoint: ASGIApp) -> list[BaseRoute]:
    return [
        TemplatedRoute(path, endpoint=endpoint, methods=MCP_METHODS, include_in_schema=False),
        TemplatedRoute(path + "/", endpoint=endpoint, methods=MCP_METHODS, include_in_schema=False),
    ]
