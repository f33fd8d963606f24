"""`chatbox dev --workers 2` (the same serving as `chatbox api --workers N`): two processes on one port accept
concurrently on one SQLite database, every message is stored once, and `/metrics` sums both processes."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from chatbox.store.models import Delivery, Message, QueueMessage
from tests.support.cli import wait_for
from tests.test_dev import chatbox_dev

DISTINCT = 120
THREADS = 12
BOOTSTRAP_KEY = "workers-bootstrap-key-for-the-e2e-test-01"
CONNECTION = {"platform": "signal", "config": {"outbound_url": "http://127.0.0.1:9/v1/send"}}
ACCEPTED = re.compile(r'^chatbox_inbound_messages_total\{outcome="(\w+)",platform="signal"\} (\S+)$', re.MULTILINE)


def test_two_workers_accept_concurrently_store_each_message_once_and_metrics_sum_both(tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    workdir.mkdir()
    # Every other message is posted twice, the copies at the same time as the first.
    posts = [f"m-{n}" for n in range(DISTINCT)] + [f"m-{n}" for n in range(0, DISTINCT, 2)]
    metrics_folder = workdir / ".chatbox" / "metrics"
    with chatbox_dev(workdir, "workers", "--workers", "2", bootstrap_api_key=BOOTSTRAP_KEY, run_connectors="0") as run:
        # Both API processes are serving once each has counted a request of its own.
        wait_for(
            lambda: (
                True if len(_processes_counting(metrics_folder, "chatbox_http_requests", run.base_url)) >= 2 else None
            ),
            timeout=60,
            what="both API workers serving",
        )
        headers = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
        with httpx.Client(base_url=run.base_url, headers=headers, timeout=10) as client:
            mailbox = client.post("/v1/mailboxes", json={"name": "agent"}).raise_for_status().json()
            created = client.post(f"/v1/mailboxes/{mailbox['id']}/connections", json=CONNECTION)
            connection = created.raise_for_status().json()
        url = f"{run.base_url}/v1/connections/{connection['id']}/messages"
        token = {"Authorization": f"Bearer {connection['inbound_token']}"}

        def post(external_id: str) -> int:
            body = {"external_chat_id": f"c-{external_id[-1]}", "external_message_id": external_id, "text": "hi"}
            # A client of its own per post: a fresh TCP connection, which either worker may accept.
            with httpx.Client(timeout=30) as client:
                return client.post(url, json=body, headers=token).status_code

        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            statuses = list(pool.map(post, posts))
        metrics = httpx.get(f"{run.base_url}/metrics", timeout=10).text
        accepting = _processes_counting(metrics_folder, "chatbox_inbound_messages")

    assert statuses == [202] * len(posts)
    engine = create_engine(f"sqlite:///{workdir / '.chatbox' / 'chatbox.db'}", poolclass=NullPool)
    try:
        with engine.connect() as db:
            stored = [str(external) for external in db.execute(select(Message.external_id)).scalars()]
            deliveries = db.execute(select(func.count()).select_from(Delivery)).scalar_one()
            queued = db.execute(select(func.count()).select_from(QueueMessage)).scalar_one()
    finally:
        engine.dispose()
    assert sorted(stored) == sorted(set(posts))
    assert deliveries == DISTINCT and queued <= DISTINCT  # the delivery worker may have taken some already
    counted = {outcome: float(value) for outcome, value in ACCEPTED.findall(metrics)}
    assert counted == {"accepted": DISTINCT, "duplicate": len(posts) - DISTINCT}
    # Each API process accepted some and wrote its own metrics file; the scrape above summed them.
    assert len(accepting) == 2, accepting


def _processes_counting(folder: Path, metric: str, probe_url: str | None = None) -> set[str]:
    """The metrics files (one per process) with a sample of `metric`; with `probe_url`, after one more request to
    its /health on a fresh connection."""
    if probe_url is not None:
        httpx.get(f"{probe_url}/health", timeout=10)
    found: set[str] = set()
    for path in folder.glob("counter_*.db"):
        samples = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        if any(json.loads(key)[0] == metric for key, *_ in samples):
            found.add(path.name)
    return found
