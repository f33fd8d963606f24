"""Prometheus metrics. Counters live in one registry the web face exposes at /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chatbox.domain.schemas import DeliveryStatus

registry = CollectorRegistry(auto_describe=True)

http_requests = Counter(
    "chatbox_http_requests", "HTTP requests served", ["method", "route", "status"], registry=registry
)
http_duration = Histogram("chatbox_http_request_duration_seconds", "HTTP request latency", ["route"], registry=registry)
inbound_messages = Counter(
    "chatbox_inbound_messages", "Inbound messages accepted", ["platform", "outcome"], registry=registry
)
deliveries = Counter("chatbox_deliveries", "Webhook delivery attempts", ["outcome"], registry=registry)


QUEUED_STATUSES = (DeliveryStatus.pending.value, DeliveryStatus.held.value)


class _QueueDepthCollector(Collector):
    """Reports deliveries by status at scrape time, from the database reader the runtime installed.

    Read from the database rather than counted in-process because the deliveries happen elsewhere
    (the `chatbox worker` process, or the delivery Lambda), not in the process serving /metrics.
    """

    def __init__(self) -> None:
        self.read_depths: Callable[[], dict[str, int]] = dict

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("chatbox_queue_depth", "Deliveries not yet delivered, by status", labels=["status"])
        by_status = GaugeMetricFamily(
            "chatbox_deliveries_by_status", "Deliveries by status (all time, every mailbox)", labels=["status"]
        )
        try:
            counts = self.read_depths()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database blinked
            counts = {}
        for status, count in sorted(counts.items()):
            by_status.add_metric([status], count)
            if status in QUEUED_STATUSES:
                depth.add_metric([status], count)
        yield depth
        yield by_status


_queue_depth = _QueueDepthCollector()
registry.register(_queue_depth)


def set_queue_depth_reader(read_depths: Callable[[], dict[str, int]]) -> None:
    """Point the queue-depth gauge at this process's database."""
    _queue_depth.read_depths = read_depths
