"""The local queue's consumer loop: what `chatbox dev` runs in its own process.

It plays Lambda's part for the local queue: receives a batch, hands each chat's records to one
worker thread, which runs them through the same `deliver_batch` as the delivery Lambda and
deletes the records it did not keep. Distinct chats deliver in parallel, so one slow webhook never
delays another chat; a chat's own records go out in order. It runs the sweeper now and then.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from chatbox.adapters.local_queue import LocalQueue
from chatbox.ports.queue import QueueRecord
from chatbox.services.delivery_attempt import Deliverer
from chatbox.services.delivery_batch import deliver_batch
from chatbox.services.delivery_requeue import sweep_unenqueued

log = logging.getLogger(__name__)

MAX_UNIX_SOCKET_PATH = 100
MAX_RECORDS_PER_CHAT = 10  # an SQS batch


def records_per_chat(visibility_seconds: float, webhook_timeout_seconds: float) -> int:
    """How many of one chat's records a worker takes at once: as many as it can POST, each taking up
    to the webhook timeout, with one timeout to spare before the visibility timeout would hand the
    last of them out again. (On AWS the same rule sizes the function timeout: 10 x 15 s within 180 s.)"""
    fitting = int(visibility_seconds // webhook_timeout_seconds) - 1
    return max(1, min(MAX_RECORDS_PER_CHAT, fitting))


class LocalConsumer:
    """Consumes the local queue with a pool of worker threads, one chat's records per task.

    `webhook_timeout` is the webhook sender's timeout: with the queue's visibility timeout it
    bounds how many of a chat's records one worker takes at once (`records_per_chat`).
    """

    def __init__(
        self,
        queue: LocalQueue,
        deliverer: Deliverer,
        *,
        webhook_timeout: float = 15.0,
        workers: int = 8,
        poll_interval: float = 0.25,
        sweep_every: float = 10.0,
        sweep_grace: float = 30.0,
    ) -> None:
        self.queue = queue
        self.deliverer = deliverer
        self.workers = workers
        self.per_chat = records_per_chat(queue.visibility_timeout, webhook_timeout)
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
                    records = self._receive(free) if free > 0 else []
                    for chat_records in _by_group(records):
                        self._submit(pool, chat_records)
                    if not records:
                        self._wait(wake)
            finally:
                if wake is not None:
                    wake.close()
                    Path(str(self.queue.wake_path)).unlink(missing_ok=True)

    def _busy(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def _receive(self, free: int) -> list[QueueRecord]:
        # No more chats than free workers: a received record's visibility timeout runs from now.
        try:
            return self.queue.receive(free * self.per_chat, max_groups=free, max_per_group=self.per_chat)
        except Exception:  # noqa: BLE001 - the database is down or restarting: wait a poll, then receive again
            log.warning("cannot receive from the local queue; trying again", exc_info=True)
            return []

    def _submit(self, pool: ThreadPoolExecutor, records: list[QueueRecord]) -> None:
        future = pool.submit(self._deliver, records)
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._in_flight.discard(future)
        self.queue.wake()

    def _deliver(self, records: list[QueueRecord]) -> None:
        # As Lambda does for SQS: what deliver_batch did not keep leaves the queue (a dead-lettered
        # record has already left it; deleting it again is a no-op).
        kept = set(deliver_batch(records, self.deliverer, self.queue))
        for record in records:
            if record.message_id not in kept:
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


def _by_group(records: Sequence[QueueRecord]) -> list[list[QueueRecord]]:
    """The records of each group (chat), in queue order."""
    groups: dict[str, list[QueueRecord]] = {}
    for record in records:
        groups.setdefault(record.group_id, []).append(record)
    return list(groups.values())
