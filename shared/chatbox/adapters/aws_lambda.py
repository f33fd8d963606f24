"""What every Lambda entry composes once per cold start: settings with secrets, a JSON logger, the runtime.

Example (a function's `handler.py`):
    logger = lambda_logger("chatbox-inbound")
    runtime = build_runtime(lambda_settings())
    handler = http_handler(create_app(runtime, routers, mcp=False), logger)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from mangum import Mangum
from mangum.types import ASGI

from chatbox.adapters.aws_secrets import resolve_secret_settings
from chatbox.domain.settings import Settings, get_settings

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def lambda_settings() -> Settings:
    """The process settings with `CHATBOX_*_SECRET_ARN` secrets resolved (read once: call at import time)."""
    return resolve_secret_settings(get_settings())


def lambda_logger(service: str, level: str | None = None) -> Logger:
    """A Powertools JSON logger for `service`; chatbox's own module loggers write through its format."""
    logger = Logger(service=service, level=level or get_settings().log_level)
    copy_config_to_registered_loggers(source_logger=logger, include={"chatbox"})
    return logger


def http_handler(app: ASGI, logger: Logger) -> LambdaHandler:
    """The ASGI app behind Mangum for API Gateway HTTP API events, logging with the request id as
    correlation id. `lifespan="off"`: Mangum would run the lifespan on every invocation; the app needs none.
    The returned handler keeps `.app` (tests and warm invocations reuse the one composed app)."""
    asgi = Mangum(app, lifespan="off")
    handler: LambdaHandler = logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)(asgi)
    return handler
