"""The Lambda sink of the metrics port: Powertools Metrics, CloudWatch Embedded Metric Format on stdout.

CloudWatch reads the EMF JSON lines a function prints, so the figures reach CloudWatch Metrics with no
scrape and no API call. EMF gives one set of dimensions to every metric of a line, while our figures carry
labels of their own (`outcome`, `route`, …): figures are buffered per set of label values, and `flush`
prints one EMF line per set (a Powertools `EphemeralMetrics` each, so nothing is shared with a `Metrics`
singleton a handler might use). Every Lambda handler flushes at the end of each invocation
(`chatbox.adapters.aws_lambda`); a histogram's observations of one invocation go out as one metric with
many values, from which CloudWatch computes percentiles.

Example:
    ```python
    sink = EmfSink(namespace="chatbox", service="chatbox-delivery")
    install_sink(sink)
    ...  # the invocation records figures through chatbox.ports.metrics
    sink.flush()  # prints {"_aws": {"CloudWatchMetrics": [...]}, "chatbox_deliveries": [1.0], "outcome": ...}
    ```
"""

from __future__ import annotations

import threading

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from chatbox.ports.metrics import MetricDefinition

UNITS = {"counter": MetricUnit.Count, "histogram": MetricUnit.Seconds}


class EmfSink:
    """Buffers figures by label values until `flush` prints them as EMF lines."""

    def __init__(self, namespace: str, service: str) -> None:
        self.namespace = namespace
        self.service = service
        self._lock = threading.Lock()
        self._by_dimensions: dict[tuple[tuple[str, str], ...], EphemeralMetrics] = {}

    def count(self, metric: MetricDefinition, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        self._add(metric, labels, amount)

    def observe(self, metric: MetricDefinition, value: float, labels: tuple[str, ...] = ()) -> None:
        self._add(metric, labels, value)

    def _add(self, metric: MetricDefinition, labels: tuple[str, ...], value: float) -> None:
        dimensions = tuple(zip(metric.labels, labels, strict=True))
        with self._lock:
            batch = self._by_dimensions.get(dimensions)
            if batch is None:
                # Default dimensions, because Powertools clears the others when it prints a full batch early.
                # CloudWatch refuses an empty dimension value; "none" keeps the figure.
                batch = EphemeralMetrics(
                    namespace=self.namespace,
                    service=self.service,
                    default_dimensions={name: label_value or "none" for name, label_value in dimensions},
                )
                self._by_dimensions[dimensions] = batch
            batch.add_metric(name=metric.name, unit=UNITS[metric.kind], value=value)

    def flush(self) -> None:
        """Print every buffered figure as EMF (one line per set of label values) and forget them."""
        with self._lock:
            batches, self._by_dimensions = self._by_dimensions, {}
        for batch in batches.values():
            batch.flush_metrics(raise_on_empty_metrics=False)
