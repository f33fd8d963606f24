"""The local queue's consumer loop: what `chatbox dev` runs in its own process.

It hands distinct chats' heads to a thread pool (one slow webhook never delays another chat),
deletes what succeeded, and runs the sweeper now and then.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from chatbox.adapters.local_queue import LocalQueue
from chatbox.ports.queue import QueueRecord
from chatbox.services.delivery import Deliverer, handle_delivery_batch, sweep_unenqueued

log = logging.getLogger(__name__)

MAX_UNIX_SOCKET_PATH = 100


class LocalConsumer:
    def __init__(
        self,
        queue: LocalQueue,
        deliverer: Deliverer,
        *,
        workers: int = 8,
        poll_interval: float = 0.25,
        sweep_every: float = 10.0,
        sweep_grace: float = 30.0,
    ) -> None:
        self.queue = queue
        self.deliverer = deliverer
        self.workers = workers
        self.poll_interval = poll_interval
        self.sweep_every = sweep_every
        self.sweep_grace = sweep_grace
        self._stop = threading.Event()
        self._in_flight: set[Future[None]] = set()
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()
        self.queue.wake()

    def run(self) -> None:
        """Consume until `stop()`; finishes the deliveries in flight before returning."""
        wake = self._bind_wake_socket()
        next_sweep = 0.0
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="delivery") as pool:
            try:
                while not self._stop.is_set():
                    if time.monotonic() >= next_sweep:
                        self._sweep()
                        next_sweep = time.monotonic() + self.sweep_every
                    free = self.workers - self._busy()
                    records = self.queue.receive(max_messages=free) if free > 0 else []
                    for record in records:
                        self._submit(pool, record)
                    if not records:
                        self._wait(wake)
            finally:
                if wake is not None:
                    wake.close()
                    Path(str(self.queue.wake_path)).unlink(missing_ok=True)

    def _busy(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def _submit(self, pool: ThreadPoolExecutor, record: QueueRecord) -> None:
        future = pool.submit(self._deliver, record)
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._in_flight.discard(future)
        self.queue.wake()

    def _deliver(self, record: QueueRecord) -> None:
        failed = handle_delivery_batch([record], self.deliverer, self.queue)
        if record.message_id not in failed:
            self.queue.delete(record)

    def _sweep(self) -> None:
        try:
            with self.queue.db.session() as db:
                sweep_unenqueued(db, self.queue, grace_seconds=self.sweep_grace)
        except Exception:  # noqa: BLE001 - the sweeper retries on its next round
            log.exception("sweeper round failed")

    def _bind_wake_socket(self) -> socket.socket | None:
        path = self.queue.wake_path
        if path is None or len(str(path)) > MAX_UNIX_SOCKET_PATH:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.setblocking(False)
        return sock

    def _wait(self, wake: socket.socket | None) -> None:
        if wake is None:
            self._stop.wait(self.poll_interval)
            return
        readable, _, _ = select.select([wake], [], [], self.poll_interval)
        if readable:
            try:
                while wake.recv(64):
                    pass
            except BlockingIOError:
                pass
