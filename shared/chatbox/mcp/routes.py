"""The MCP face's routes: the admin server per account and the mailbox server per mailbox.

Plain `Route`s rather than a `Mount`, which would redirect the bare path to a trailing slash; both
spellings are served.

Example:
    ```python
    app = Starlette(routes=mcp_routes(runtime))  # or chatbox.asgi.create_app(runtime), which includes them
    ```
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

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


def _both_spellings(path: str, endpoint: ASGIApp) -> list[BaseRoute]:
    return [
        Route(path, endpoint=endpoint, methods=MCP_METHODS, include_in_schema=False),
        Route(path + "/", endpoint=endpoint, methods=MCP_METHODS, include_in_schema=False),
    ]
