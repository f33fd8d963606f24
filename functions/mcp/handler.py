"""Lambda entry for the MCP servers: the MCP-only app behind Mangum, composed once per cold start.

`lifespan="off"` (in http_handler): Mangum would enter the ASGI lifespan on every invocation, and an
MCP session manager's `run()` is single-use; the endpoint runs a fresh stateless manager per request
instead, so warm invocations work like the first.
"""

from __future__ import annotations

from chatbox.adapters.cold_start import composing

with composing():
    from chatbox.adapters.aws_lambda import http_handler, lambda_logger, lambda_settings
    from chatbox.asgi import create_mcp_app
    from chatbox.compose import build_runtime
    from connectors import builtin_platforms

    logger = lambda_logger("chatbox-mcp")
    settings = lambda_settings()
    runtime = build_runtime(settings, platforms=builtin_platforms())
    app = create_mcp_app(runtime)
    handler = http_handler(app, logger, settings)
