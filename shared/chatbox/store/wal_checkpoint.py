"""Copying a SQLite database's write-ahead log back into the database file, off the writer's path.

SQLite checkpoints by itself inside the commit that takes the log past `wal_autocheckpoint` pages (1,000 by
default): that commit copies every page into the database file and syncs it, while the group commit's callers
wait. Under the Telegram ingest benchmark a batch of 32 messages writes about 90 pages, so one batch in 11 paid a
checkpoint and its `fdatasync`: batches of 32 in a loop spent a sixth of their commit's CPU and more than half of
their wall time on checkpoints, and under load the slowest batches were those.

Here a thread of its own runs a PASSIVE checkpoint (it never blocks a writer or a reader, and sqlite3 runs it
without the GIL) once `COMMITS_PER_CHECKPOINT` commits have been made since the last one, or `CHECKPOINT_INTERVAL`
seconds after the first of fewer: under the Telegram bench about a dozen checkpoints a second of at most ~1,500
pages each, and a quiet database about one a second (one sync per checkpoint). Small checkpoints often keep the
slowest requests faster than big ones seldom (p99 under the bench, per `COMMITS_PER_CHECKPOINT`: 8 -> 11 ms,
16 -> 12-14 ms, 32 -> 16 ms, 64 -> 15-20 ms, no thread (the writers' backstop alone) -> 31 ms).
The writers keep a backstop:
`WAL_AUTOCHECKPOINT_PAGES` (set on every connection, `chatbox.store.database`) is above what the thread leaves
behind, so a writer checkpoints only when this thread falls behind or is not running (a process that commits no
group-commit batch, such as the delivery worker: its writes are few). Durability does not depend on checkpoints:
a transaction is durable once its commit has written it to the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

# The writers' own checkpoint threshold, in pages (4 KiB each; SQLite's default is 1,000). Under sustained writes
# the log grows to it even with the thread running (the log restarts from its beginning only when a writer finds
# everything copied), but by then the thread has copied nearly all of it: the writer's checkpoint is small.
WAL_AUTOCHECKPOINT_PAGES = 10_000
# A batch of 32 messages writes about 90 pages: 16 batches stay well under the backstop.
COMMITS_PER_CHECKPOINT = 16
CHECKPOINT_INTERVAL = 1.0


class WalCheckpointer:
    """Checkpoints the SQLite file at `path` on its own thread, after `commits` calls of `committed` or `interval`
    seconds after the first of fewer.

    The thread starts with the first `committed` and stops with `stop`; nothing here raises to the caller.
    """

    def __init__(
        self, path: str, *, commits: int = COMMITS_PER_CHECKPOINT, interval: float = CHECKPOINT_INTERVAL
    ) -> None:
        self.path = path
        self.commits = commits
        self.interval = interval
        self.checkpoints = 0  # checkpoints run so far (for tests and diagnostics)
        # Commits since the last checkpoint. Counted without a lock: a count lost to a race only moves a
        # checkpoint by a commit.
        self._commits = 0
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def committed(self) -> None:
        """A transaction was committed. Cheap enough for every batch."""
        if self._thread is None:
            self._start()
        self._commits += 1
        if self._commits == 1 or self._commits >= self.commits:
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
            while not self._stopping:
                self._wanted.wait()
                self._wanted.clear()
                if self._commits < self.commits and not self._stopping:
                    # Too few commits to be worth a sync yet: wait for more, at most `interval`.
                    self._wanted.wait(self.interval)
                    self._wanted.clear()
                if self._stopping:
                    return
                self._commits = 0
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
