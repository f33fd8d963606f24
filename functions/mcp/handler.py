"""Lambda entry for the MCP servers: the MCP-only app behind Mangum, composed once per cold start.

`lifespan="off"`: Mangum would enter the ASGI lifespan on every invocation, and an MCP session
manager's `run()` is single-use; the endpoint runs a fresh stateless manager per request instead,
so warm invocations work like the first.
"""

from __future__ import annotations

from mangum import Mangum

from chatbox.mcp.app import create_mcp_app
from chatbox.runtime import build_runtime
from chatbox.settings import get_settings

handler = Mangum(create_mcp_app(build_runtime(get_settings())), lifespan="off")
