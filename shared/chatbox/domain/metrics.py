"""Prometheus metrics. The process's counters live in one registry; /metrics adds the queue depth of the
runtime serving it (`scrape`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
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


class QueueDepthCollector(Collector):
    """Reports deliveries by status at scrape time, from a reader of one runtime's database.

    Read from the database rather than counted in-process because the deliveries happen elsewhere
    (the `chatbox worker` process, or the delivery Lambda), not in the process serving /metrics.
    """

    def __init__(self, read_depths: Callable[[], Mapping[str, int]]) -> None:
        self.read_depths = read_depths

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("chatbox_queue_depth", "Deliveries not yet delivered, by status", labels=["status"])
        by_status = GaugeMetricFamily(
            "chatbox_deliveries_by_status", "Deliveries by status (all time, every mailbox)", labels=["status"]
        )
        try:
            counts = dict(self.read_depths())
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database blinked
            counts = {}
        for status, count in sorted(counts.items()):
            by_status.add_metric([status], count)
            if status in QUEUED_STATUSES:
                depth.add_metric([status], count)
        yield depth
        yield by_status


def scrape(read_depths: Callable[[], Mapping[str, int]]) -> bytes:
    """The Prometheus text for /metrics: this process's counters, then the deliveries by status `read_depths` reads.

    The reader is the caller's (each app passes its own runtime's), so two apps in one process (tests, or
    two runtimes side by side) each report their own database.
    """
    per_scrape = CollectorRegistry(auto_describe=False)
    per_scrape.register(QueueDepthCollector(read_depths))
    return generate_latest(registry) + generate_latest(per_scrape)
