"""`chatbox worker`: the local delivery queue's consumer, in a process of its own (`chatbox dev` starts one).

Kept apart from `chatbox.local.serve`: a worker serves no HTTP, and importing uvicorn and the app (FastAPI, the
routes, the MCP SDK) cost each worker process about a third of its start.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

from chatbox.adapters.local_queue import LocalQueue
from chatbox.local.consumer import LocalConsumer
from chatbox.runtime import Runtime

log = logging.getLogger(__name__)


def run_worker(runtime: Runtime) -> None:
    """Run the local queue consumer until SIGTERM or SIGINT, finishing deliveries in flight."""
    queue = runtime.queue
    assert isinstance(queue, LocalQueue)
    settings = runtime.settings
    consumer = LocalConsumer(
        queue,
        runtime.deliverer,
        webhook_timeout=settings.delivery_timeout_seconds,
        sweep_grace=settings.sweep_grace_seconds,
    )

    def stop(_signum: int, _frame: FrameType | None) -> None:
        consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=_stop_when_orphaned, args=(consumer,), daemon=True).start()
    log.info("delivery worker consuming the local queue")
    # Service events go out on a thread of their own, so no subscriber ever waits in line with message deliveries.
    events_stop = threading.Event()
    threading.Thread(target=runtime.event_dispatcher.run, args=(events_stop,), name="events", daemon=True).start()
    consumer.run()
    events_stop.set()


def _stop_when_orphaned(consumer: LocalConsumer, interval: float = 1.0) -> None:
    """A worker started by `chatbox dev` stops when its parent is gone, even if the parent was killed."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(interval)
    log.warning("parent process %d is gone; stopping the delivery worker", parent)
    consumer.stop()
