"""The Prometheus sink of the metrics port, and the text `/metrics` serves under `chatbox dev` / `chatbox api`.

Why multiprocess files: `chatbox dev` is two processes. The API process serves `/metrics`, but deliveries
and service events are attempted in its `chatbox worker` child (and `chatbox api --workers N` is N
processes). prometheus_client's multiprocess mode gives each process a small mmapped file of its
counters and histograms in one folder (`<CHATBOX_HOME>/metrics`, emptied when `chatbox dev` starts, so a
restart does not resurrect the last run's counts), and the scrape sums the files of every process, live or
exited: a worker restarted by its supervisor keeps its predecessor's counts. `enable_multiprocess` must run
before the first figure is recorded in the process and before any child is started (the child inherits
`PROMETHEUS_MULTIPROC_DIR` and opens its own file).

Why no process gauges: what is waiting (queue depth), given up (dead letters) or paused is a fact of the
database, not of one process, and a per-process gauge would need a merge mode that is wrong for at least
one of them after a restart. `StoreCollector` reads these at scrape time from the runtime's database
instead, so any process serving `/metrics` reports the truth for the database it serves.

Without `enable_multiprocess` (tests, an embedding), figures stay in this process's registry.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from chatbox.domain.schemas import DeliveryStatus
from chatbox.ports.metrics import CATALOGUE, DiscardingSink, MetricDefinition, current_sink, install_sink

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
QUEUED_STATUSES = (DeliveryStatus.pending.value, DeliveryStatus.held.value)


class PrometheusSink:
    """Counters and histograms of the catalogue in one registry (or the multiprocess files, when enabled).

    Each labelled child is looked up once and kept: a request then costs two dict reads and two increments,
    not prometheus_client's locked `labels()` lookup per figure (the request middleware is on the hot path).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counter_families: dict[str, Counter] = {}
        self._histogram_families: dict[str, Histogram] = {}
        for metric in CATALOGUE:
            if metric.kind == "counter":
                self._counter_families[metric.name] = Counter(
                    metric.name, metric.help, metric.labels, registry=self.registry
                )
            else:
                self._histogram_families[metric.name] = Histogram(
                    metric.name, metric.help, metric.labels, registry=self.registry
                )
        self._counters: dict[tuple[str, tuple[str, ...]], Counter] = {}
        self._histograms: dict[tuple[str, tuple[str, ...]], Histogram] = {}

    def count(self, metric: MetricDefinition, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        key = (metric.name, labels)
        counter = self._counters.get(key)
        if counter is None:
            family = self._counter_families[metric.name]
            counter = self._counters[key] = family.labels(*labels) if labels else family
        counter.inc(amount)

    def observe(self, metric: MetricDefinition, value: float, labels: tuple[str, ...] = ()) -> None:
        key = (metric.name, labels)
        histogram = self._histograms.get(key)
        if histogram is None:
            family = self._histogram_families[metric.name]
            histogram = self._histograms[key] = family.labels(*labels) if labels else family
        histogram.observe(value)


_process_sink: PrometheusSink | None = None


def prometheus_sink() -> PrometheusSink:
    """The process's Prometheus sink (one: its metric names may be registered once)."""
    global _process_sink  # noqa: PLW0603 - one registry per process
    if _process_sink is None:
        _process_sink = PrometheusSink()
    return _process_sink


def install_prometheus_metrics() -> None:
    """Record into Prometheus unless the process already chose a sink (a Lambda root installs EMF first)."""
    if isinstance(current_sink(), DiscardingSink):
        install_sink(prometheus_sink())


def enable_multiprocess(directory: Path) -> None:
    """Share this process's figures, and its future children's, through files in `directory`, emptied first.

    Call before anything is recorded in this process and before starting children.
    """
    directory = directory.resolve()  # the worker child may not share the cwd it is relative to
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ[MULTIPROCESS_ENV] = str(directory)
    # prometheus_client picks its value class when first imported; this process imported it before the
    # folder was known. Labelled metrics create their values on first use, so switching now covers them all.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    # An unlabelled metric made its value when created: a sink made before now would keep it out of the files.
    global _process_sink  # noqa: PLW0603 - one registry per process
    stale, _process_sink = _process_sink, None
    if stale is not None and current_sink() is stale:
        install_sink(prometheus_sink())


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


class StoreCollector(Collector):
    """Queue depth, deliveries by status, dead letters and paused mailboxes, read from a runtime's database at
    scrape time (see the module docstring)."""

    def __init__(self, read_deliveries: Callable[[], Mapping[str, int]], read_paused: Callable[[], int]) -> None:
        self.read_deliveries = read_deliveries
        self.read_paused = read_paused

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("chatbox_queue_depth", "Deliveries not yet delivered, by status", labels=["status"])
        by_status = GaugeMetricFamily(
            "chatbox_deliveries_by_status", "Deliveries by status (all time, every mailbox)", labels=["status"]
        )
        dead = GaugeMetricFamily("chatbox_dead_letters", "Deliveries given up (status dead), every mailbox")
        paused = GaugeMetricFamily("chatbox_paused_mailboxes", "Mailboxes paused (by an operator or auto-pause)")
        try:
            counts = dict(self.read_deliveries())
            paused_count: int | None = self.read_paused()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database blinked
            counts, paused_count = {}, None
        for status, number in sorted(counts.items()):
            by_status.add_metric([status], number)
            if status in QUEUED_STATUSES:
                depth.add_metric([status], number)
        if DeliveryStatus.dead.value in counts:
            dead.add_metric([], counts[DeliveryStatus.dead.value])
        if paused_count is not None:
            paused.add_metric([], paused_count)
        yield from (depth, by_status, dead, paused)


def scrape(read_deliveries: Callable[[], Mapping[str, int]], read_paused: Callable[[], int]) -> bytes:
    """The Prometheus text for /metrics: the recorded figures (of every process sharing the multiprocess
    folder, when enabled), then what the readers find in the database of the runtime serving the scrape."""
    recorded = CollectorRegistry(auto_describe=False)
    if multiprocess_enabled():
        MultiProcessCollector(recorded)  # type: ignore[no-untyped-call]
    else:
        recorded = prometheus_sink().registry
    per_scrape = CollectorRegistry(auto_describe=False)
    per_scrape.register(StoreCollector(read_deliveries, read_paused))
    return generate_latest(recorded) + generate_latest(per_scrape)
