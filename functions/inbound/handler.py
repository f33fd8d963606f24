"""Lambda entry for inbound traffic: what platforms and container connectors post, and nothing else.

Served routes (the template routes only these here): `GET /health`,
`POST /v1/connections/{id}/messages` (container connectors, inbound token) and, with the webhook-mode
connectors, `/v1/ingest/{platform}/{connection_id}` (Telegram and Slack). The two POST routes are served by the
fast lane (`chatbox.web.fast_ingest`); the FastAPI app of the three routers behind it is composed on the first
request the lane hands on (`/health`, an unusual body), so a cold start imports neither FastAPI's route
declarations nor the management API's routes nor the MCP SDK.
"""

from __future__ import annotations

from chatbox.adapters.cold_start import composing

with composing():
    from starlette.types import ASGIApp

    from chatbox.adapters.aws_lambda import http_handler, lambda_logger, lambda_settings
    from chatbox.compose import build_runtime
    from chatbox.web.fast_ingest import FastIngest
    from chatbox.web.lazy import LazyApp
    from connectors import builtin_platforms

    def inbound_api() -> ASGIApp:
        """The FastAPI app of the routes this function serves (health, inbound, ingest), without a lane of its own."""
        from chatbox.asgi import create_app
        from chatbox.web.routes import health, inbound, ingest

        return create_app(runtime, (health.router, inbound.router, ingest.router), mcp=False, fast_lane=False)

    logger = lambda_logger("chatbox-inbound")
    settings = lambda_settings()
    runtime = build_runtime(settings, platforms=builtin_platforms())
    app = FastIngest(LazyApp(inbound_api), runtime)
    handler = http_handler(app, logger, settings)
