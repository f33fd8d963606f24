"""Copying a SQLite database's write-ahead log back into the database file, off the writer's path.

SQLite checkpoints by itself inside the commit that takes the log past `wal_autocheckpoint` pages (1,000 by
default): that commit copies every page into the database file and syncs it, while the group commit's callers
wait. Under the Telegram ingest benchmark a batch of 32 messages writes about 90 pages, so one batch in 11 paid a
checkpoint and its `fdatasync`: a third of the database thread's commit time and the tail of its batches.

Here a thread of its own runs a PASSIVE checkpoint (it never blocks a writer or a reader, and sqlite3 runs it
without the GIL) shortly after commits, one for the commits of `delay` seconds. The writers keep a backstop:
`WAL_AUTOCHECKPOINT_PAGES` (set on every connection, `chatbox.store.database`) is far above what the thread
leaves behind, so a writer checkpoints only when this thread falls behind or is not running (a process that
commits no group-commit batch, such as the delivery worker: its writes are few). Durability does not depend on
checkpoints: a transaction is durable once its commit has written it to the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

log = logging.getLogger(__name__)

# The writers' own checkpoint threshold, in pages (4 KiB each): about 40 MiB of log, which a running checkpointer
# never lets accumulate; SQLite's default is 1,000.
WAL_AUTOCHECKPOINT_PAGES = 10_000
CHECKPOINT_DELAY = 0.05


class WalCheckpointer:
    """Checkpoints the SQLite file at `path` on its own thread, soon after `committed` is called.

    The thread starts with the first `committed` and stops with `stop`; nothing here raises to the caller.
    """

    def __init__(self, path: str, *, delay: float = CHECKPOINT_DELAY) -> None:
        self.path = path
        self.delay = delay
        self.checkpoints = 0  # checkpoints run so far (for tests and diagnostics)
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def committed(self) -> None:
        """A transaction was committed: checkpoint within about `delay` seconds. Cheap enough for every batch."""
        if self._thread is None:
            self._start()
        if not self._wanted.is_set():
            self._wanted.set()

    def stop(self, timeout: float = 5.0) -> None:
        with self._start_lock:
            self._stopping = True
            thread = self._thread
        self._wanted.set()
        if thread is not None:
            thread.join(timeout)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        try:
            while True:
                self._wanted.wait()
                if self._stopping:
                    return
                # Commits of the next moments join this checkpoint: one copy pass and one sync for all of them.
                time.sleep(self.delay)
                self._wanted.clear()
                self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # a busy or failing checkpoint leaves it to the next one and the backstop
            log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
            return
        self.checkpoints += 1
