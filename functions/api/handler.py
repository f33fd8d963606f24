"""Lambda entry for the REST API: the core's FastAPI app behind Mangum, composed once per cold start.

The MCP endpoints are their own function (functions/mcp), so this one never loads the MCP SDK.
"""

from __future__ import annotations

import gc

# A cold start creates hundreds of thousands of long-lived objects (modules, classes, pydantic and SQLAlchemy
# schemas) and no garbage: the collector's passes over them while importing, and the full collections they set off
# during the first requests, are about a tenth of the cold start (bench/README.md). Collection is off while the
# function is composed, and what composing built is frozen (never scanned again) before it is turned back on.
collecting = gc.isenabled()
gc.disable()
try:
    from chatbox.adapters.aws_lambda import http_handler, lambda_logger, lambda_settings
    from chatbox.asgi import create_app
    from chatbox.compose import build_runtime
    from connectors import builtin_platforms, webhook_platform_settings

    logger = lambda_logger("chatbox-api")
    settings = lambda_settings()
    runtime = build_runtime(settings, platforms=builtin_platforms(), platform_settings=webhook_platform_settings())
    app = create_app(runtime, mcp=False)
    handler = http_handler(app, logger, settings)
finally:
    gc.freeze()
    if collecting:
        gc.enable()
