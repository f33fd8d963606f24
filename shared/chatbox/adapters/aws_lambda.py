"""What every Lambda entry composes once per cold start: settings with secrets, a redacting JSON logger,
metrics in CloudWatch's Embedded Metric Format, the runtime.

Example (a function's `handler.py`):
    logger = lambda_logger("chatbox-inbound")
    runtime = build_runtime(lambda_settings())  # the process's metrics go to EMF from here on
    handler = http_handler(create_app(runtime, routers, mcp=False), logger)  # flushes them per invocation

    @flushes_metrics  # a handler that is not an HTTP app's
    def handler(event, context): ...
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.types import LogRecord
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from chatbox.adapters.aws_secrets import resolve_secret_settings
from chatbox.adapters.emf_metrics import EmfSink
from chatbox.domain.redaction import install_log_redaction, redact, redact_value, register_secrets
from chatbox.domain.settings import Settings, get_settings
from chatbox.ports.metrics import current_sink, install_sink

if TYPE_CHECKING:  # Mangum is imported by the HTTP functions only: it ships in their layer, not the base one
    from mangum.types import ASGI

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


class RedactingPowertoolsFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON log format with every string of the log entry redacted before it is serialized
    (message, exception text, stack trace values, appended keys): see `chatbox.domain.redaction`."""

    def serialize(self, log: LogRecord) -> str:
        redacted: dict[str, Any] = redact_value(log)
        return super().serialize(redacted)

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's naming
        return redact(super().formatException(ei))


def lambda_settings() -> Settings:
    """The process settings with `CHATBOX_*_SECRET_ARN` secrets resolved (read once: call at import time).
    The secret values are kept out of every log line from then on, and the process's metrics go to EMF
    (namespace CHATBOX_METRICS_NAMESPACE, a `service` dimension naming the function) instead of Prometheus."""
    settings = resolve_secret_settings(get_settings())
    register_secrets(settings.secret_values())
    install_sink(EmfSink(settings.metrics_namespace, os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "chatbox")))
    return settings


def flush_metrics() -> None:
    """Print the figures the invocation recorded as EMF lines (nothing when the sink is not EMF)."""
    sink = current_sink()
    if isinstance(sink, EmfSink):
        sink.flush()


def flushes_metrics(handler: LambdaHandler) -> LambdaHandler:
    """`handler`, printing the invocation's metrics when it returns or raises."""

    @functools.wraps(handler)
    def flushing(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            return handler(event, context)
        finally:
            flush_metrics()

    return flushing


def lambda_logger(service: str, level: str | None = None) -> Logger:
    """A Powertools JSON logger for `service`, redacting (no secret, token or credential-bearing URL in any
    line); chatbox's own module loggers write through its format, and every other record of the process
    (httpx, the Lambda runtime's root handler) is redacted too."""
    logger = Logger(
        service=service, level=level or get_settings().log_level, logger_formatter=RedactingPowertoolsFormatter()
    )
    install_log_redaction(loggers=[logger.name])  # the record factory, and a filter on each handler
    copy_config_to_registered_loggers(source_logger=logger, include={"chatbox"})
    return logger


def http_handler(app: ASGI, logger: Logger, settings: Settings | None = None) -> LambdaHandler:
    """The ASGI app behind Mangum for API Gateway HTTP API events, logging with the request id as
    correlation id. `lifespan="off"`: Mangum would run the lifespan on every invocation; the app needs none.

    With `settings` and no CHATBOX_PUBLIC_URL (a first deploy: the template cannot pass the API's own URL
    to its functions), the API's domain is taken from the request context API Gateway fills in, so MCP's
    Host check, mailbox MCP URLs and platform webhook URLs are right from the first request.
    The returned handler keeps `.app` (tests and warm invocations reuse the one composed app) and prints the
    invocation's metrics before it returns."""
    from mangum import Mangum

    asgi = Mangum(app, lifespan="off")
    served: LambdaHandler = logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)(asgi)
    if settings is None:
        return flushes_metrics(served)

    @functools.wraps(served)  # keeps `.app`
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        settings.adopt_serving_domain(api_gateway_domain(event))
        return served(event, context)

    return flushes_metrics(handler)


def api_gateway_domain(event: dict[str, Any]) -> str:
    """The domain API Gateway received the request on (its own or a mapped custom domain), from the request
    context it writes itself: unlike the Host header, a client cannot choose it."""
    context = event.get("requestContext")
    domain = context.get("domainName") if isinstance(context, dict) else None
    return domain if isinstance(domain, str) else ""
