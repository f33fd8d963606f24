"""Lambda entry for inbound traffic: what platforms and container connectors post, and nothing else.

Served routes (the template routes only these here): `GET /health`,
`POST /v1/connections/{id}/messages` (container connectors, inbound token) and, with the webhook-mode
connectors, `/v1/ingest/{platform}/{connection_id}` (Telegram and Slack). Composed once per cold start, with only these
routers, so a cold start loads neither the management API's routes nor the MCP SDK.
"""

from __future__ import annotations

from fastapi import APIRouter

from chatbox.adapters.aws_lambda import http_handler, lambda_logger, lambda_settings
from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.web.routes import health, inbound, ingest
from connectors import builtin_platforms

INBOUND_ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    inbound.router,
    ingest.router,  # Telegram and Slack push here: /v1/ingest/{platform}/{connection_id}
)

logger = lambda_logger("chatbox-inbound")
settings = lambda_settings()
runtime = build_runtime(settings, platforms=builtin_platforms())
app = create_app(runtime, INBOUND_ROUTERS, mcp=False)
handler = http_handler(app, logger, settings)
