"""Lambda entry for the REST API: the core's FastAPI app behind Mangum, composed once per cold start.

The MCP endpoints are their own function (functions/mcp), so this one never loads the MCP SDK.
"""

from __future__ import annotations

from chatbox.adapters.cold_start import composing

with composing():
    from chatbox.adapters.aws_lambda import http_handler, lambda_logger, lambda_settings
    from chatbox.asgi import create_app
    from chatbox.compose import build_runtime
    from connectors import builtin_platforms, webhook_platform_settings

    logger = lambda_logger("chatbox-api")
    settings = lambda_settings()
    runtime = build_runtime(settings, platforms=builtin_platforms(), platform_settings=webhook_platform_settings())
    app = create_app(runtime, mcp=False)
    handler = http_handler(app, logger, settings)
