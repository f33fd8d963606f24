"""The metrics port: the figures the core records, by name, and the sink it records them into.

The core says *what* happened (`count(HTTP_REQUESTS, (method, route, status))`, `observe(ACCEPT_SECONDS, …)`);
a sink chosen by the composition root says where it goes:

- `chatbox.adapters.prometheus_metrics` for `chatbox dev` / `chatbox api` (scraped at `/metrics`, shared
  with the worker child through prometheus_client's multiprocess files);
- `chatbox.adapters.emf_metrics` on Lambda (Powertools Metrics, CloudWatch Embedded Metric Format printed to
  stdout and flushed at the end of each invocation; no scrape).

The sink is one per process, like a logger: a Lambda invocation and a scrape both speak for the whole
process, whichever runtime recorded the figure. Label values are passed positionally in the order of the
metric's `labels`, so the hot path (every HTTP request) builds no dict.

Example:
    ```python
    from chatbox.ports import metrics

    metrics.count(metrics.DELIVERIES, ("delivered",))
    metrics.observe(metrics.DELIVERY_SECONDS, 0.12, ("delivered",))
    ```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class MetricDefinition:
    """One figure: a counter (Prometheus adds `_total`) or a histogram of seconds."""

    name: str
    kind: Literal["counter", "histogram"]
    help: str
    labels: tuple[str, ...] = ()


HTTP_REQUESTS = MetricDefinition(
    "chatbox_http_requests", "counter", "HTTP requests served, by route template", ("method", "route", "status")
)
HTTP_SECONDS = MetricDefinition(
    "chatbox_http_request_duration_seconds", "histogram", "HTTP request latency, by route template", ("route",)
)
INBOUND_MESSAGES = MetricDefinition(
    "chatbox_inbound_messages", "counter", "Inbound messages accepted (or found duplicate)", ("platform", "outcome")
)
ACCEPT_SECONDS = MetricDefinition(
    "chatbox_accept_duration_seconds",
    "histogram",
    "Time to accept one inbound message: store it with its delivery, hand it to the queue",
    ("platform",),
)
DELIVERIES = MetricDefinition(
    "chatbox_deliveries", "counter", "Webhook delivery attempts, by the attempt's outcome", ("outcome",)
)
DELIVERY_SECONDS = MetricDefinition(
    "chatbox_delivery_duration_seconds", "histogram", "Webhook delivery attempt latency (the POST)", ("outcome",)
)
DEAD_LETTERED = MetricDefinition(
    "chatbox_dead_lettered", "counter", "Deliveries given up (moved to the dead letters) by this process"
)
EVENT_DELIVERIES = MetricDefinition(
    "chatbox_event_deliveries", "counter", "Service event delivery attempts, by outcome", ("outcome",)
)

CATALOGUE: tuple[MetricDefinition, ...] = (
    HTTP_REQUESTS,
    HTTP_SECONDS,
    INBOUND_MESSAGES,
    ACCEPT_SECONDS,
    DELIVERIES,
    DELIVERY_SECONDS,
    DEAD_LETTERED,
    EVENT_DELIVERIES,
)


class MetricsSink(Protocol):
    """Where recorded figures go. Must be cheap and must not raise: it runs on the request's hot path."""

    def count(self, metric: MetricDefinition, labels: tuple[str, ...] = (), amount: float = 1.0) -> None: ...

    def observe(self, metric: MetricDefinition, value: float, labels: tuple[str, ...] = ()) -> None: ...


class DiscardingSink:
    """Records nothing: the sink until a composition root installs one (a script, a unit test)."""

    def count(self, metric: MetricDefinition, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        pass

    def observe(self, metric: MetricDefinition, value: float, labels: tuple[str, ...] = ()) -> None:
        pass


_sink: MetricsSink = DiscardingSink()


def install_sink(sink: MetricsSink) -> None:
    """Make `sink` the process's metrics sink (composition roots call this once)."""
    global _sink  # noqa: PLW0603 - one sink per process, like the root logger
    _sink = sink


def current_sink() -> MetricsSink:
    return _sink


def count(metric: MetricDefinition, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
    """Add `amount` to a counter of the process's sink."""
    _sink.count(metric, labels, amount)


def observe(metric: MetricDefinition, value: float, labels: tuple[str, ...] = ()) -> None:
    """Record one observation (seconds) of a histogram of the process's sink."""
    _sink.observe(metric, value, labels)
