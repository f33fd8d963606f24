"""The metrics sinks alone: the EMF sink keeps each figure's labels as its dimensions, however many it prints;
figures of a parent and its child process are scraped as one; the README names every figure the core records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatbox.adapters.emf_metrics import EmfSink
from chatbox.ports import metrics


def _emf_lines(output: str) -> list[dict[str, Any]]:
    return [line for line in map(json.loads, output.splitlines()) if "_aws" in line]


def test_emf_keeps_the_labels_as_dimensions_past_a_full_batch(capsys: pytest.CaptureFixture[str]) -> None:
    sink = EmfSink(namespace="chatbox-test", service="chatbox-delivery")
    for _ in range(150):  # Powertools prints a metric early at 100 values, and forgets the dimensions it was given
        sink.observe(metrics.DELIVERY_SECONDS, 0.25, ("delivered",))
    sink.count(metrics.DELIVERIES, ("failed",), 2)
    sink.count(metrics.DEAD_LETTERED)
    sink.flush()
    lines = _emf_lines(capsys.readouterr().out)
    sink.flush()
    again = capsys.readouterr().out

    latencies = [line for line in lines if "chatbox_delivery_duration_seconds" in line]
    assert sum(len(line["chatbox_delivery_duration_seconds"]) for line in latencies) == 150
    assert all(line["outcome"] == "delivered" for line in latencies)
    [failed] = [line for line in lines if "chatbox_deliveries" in line]
    assert (failed["outcome"], failed["chatbox_deliveries"]) == ("failed", [2.0])
    [dead] = [line for line in lines if "chatbox_dead_lettered" in line]
    assert dead["chatbox_dead_lettered"] == [1.0]
    for line in lines:
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "chatbox-test"
        assert line["service"] == "chatbox-delivery"
    assert _emf_lines(again) == []  # flushed figures are not printed twice


def test_the_readme_lists_every_recorded_metric_under_its_prometheus_name() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("### Metrics") :]

    for metric in metrics.CATALOGUE:
        prometheus_name = f"{metric.name}_total" if metric.kind == "counter" else metric.name
        assert f"| `{prometheus_name}` |" in section, prometheus_name


SHARED_FIGURES_SCRIPT = """
import subprocess, sys
from pathlib import Path
from chatbox.adapters import prometheus_metrics
from chatbox.ports import metrics

prometheus_metrics.install_prometheus_metrics()  # as build_runtime does, before `chatbox dev` enables sharing
prometheus_metrics.enable_multiprocess(Path(sys.argv[1]))
metrics.count(metrics.DEAD_LETTERED)
metrics.count(metrics.DELIVERIES, ("delivered",))
child = (
    "from chatbox.adapters import prometheus_metrics; from chatbox.ports import metrics; "
    "prometheus_metrics.install_prometheus_metrics(); metrics.count(metrics.DELIVERIES, ('delivered',), 2)"
)
subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
sys.stdout.write(prometheus_metrics.scrape(lambda: {"pending": 3}, lambda: 1).decode())
"""


def test_a_child_process_and_its_parent_are_scraped_as_one(tmp_path: Path) -> None:
    """Run in a process of its own: sharing switches prometheus_client's value class for the whole process."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_999999.db").write_bytes(b"left over from the last run")

    result = subprocess.run(
        [sys.executable, "-c", SHARED_FIGURES_SCRIPT, str(shared)], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    figures = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(result.stdout)
        for sample in family.samples
    }
    assert figures[("chatbox_deliveries_total", (("outcome", "delivered"),))] == 3
    assert figures[("chatbox_dead_lettered_total", ())] == 1
    assert figures[("chatbox_queue_depth", (("status", "pending"),))] == 3
    assert figures[("chatbox_paused_mailboxes", ())] == 1
    assert not (shared / "counter_999999.db").exists()
