"""Lambda entry for the REST API: the core's FastAPI app behind Mangum, composed once per cold start.

The MCP endpoints are their own function (functions/mcp), so this one never loads the MCP SDK. The template sends
the two ingest routes' POSTs to the inbound function, so the management routers are composed here and the ingest
routes only if a request for one of them (another method: a 405) reaches this function.
"""

from __future__ import annotations

from chatbox.adapters.cold_start import composing

with composing():
    from starlette.types import ASGIApp

    from chatbox.adapters.aws_lambda import http_handler, lambda_logger, lambda_settings
    from chatbox.asgi import create_app
    from chatbox.compose import build_runtime
    from chatbox.web.ingest_paths import INGEST_PATHS
    from chatbox.web.management_routers import MANAGEMENT_ROUTERS
    from connectors import builtin_platforms, webhook_platform_settings

    def ingest_api() -> ASGIApp:
        """The ingest routes' app, as `chatbox dev` serves them (fast lane included)."""
        from chatbox.web.routes import inbound, ingest

        return create_app(runtime, (inbound.router, ingest.router), mcp=False)

    logger = lambda_logger("chatbox-api")
    settings = lambda_settings()
    runtime = build_runtime(settings, platforms=builtin_platforms(), platform_settings=webhook_platform_settings())
    app = create_app(runtime, MANAGEMENT_ROUTERS, mcp=False, handed_on=(INGEST_PATHS, ingest_api))
    handler = http_handler(app, logger, settings)
