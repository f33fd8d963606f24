"""Group commit for the durable accept on SQLite: whatever accepts are queued when the database thread gets to
them are written in one transaction on the raw `sqlite3` connection and committed once, then each caller is
answered.

On SQLite the commit and the transaction's bookkeeping are most of an accept's cost, and every write already
goes through one thread (`Database.executor`), so requests that arrive while a batch is written simply form the
next batch: nothing waits for a timer, and an idle server commits each accept alone. Durability is unchanged: a
caller is answered only after the commit that holds its message returned (a 202 means committed).

If anything in a batch fails unexpectedly (or a message meets a copy of itself stored concurrently by another
process), the batch is rolled back and its accepts are run again one by one, each with its own commit, so one
bad message never fails the others.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from chatbox.store.database import Database

if TYPE_CHECKING:
    import sqlite3

# One accept run alone: given a session, commits it and returns the caller's result (or raises its error).
AcceptWork = Callable[[Session], Any]
# A whole batch's accepts written at once on the raw connection, in the committer's transaction (uncommitted): per
# work, in order, (True, its result) or (False, the error to raise to its caller, with nothing of it written);
# anything it raises runs the batch one by one.
BatchWrite = Callable[["sqlite3.Connection", Sequence[AcceptWork]], list[tuple[bool, Any]]]


@dataclass
class _Pending:
    work: AcceptWork
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


_Settled = tuple[_Pending, bool, Any]  # a caller and its answer: (True, result) or (False, error)


class GroupCommitter:
    """Runs accepts on the database thread, many to a commit. Thread-safe; `submit` is called from event loops."""

    def __init__(
        self, db: Database, *, write_batch: BatchWrite, after_commit: Callable[[], None] | None = None
    ) -> None:
        """`write_batch` writes a batch (of any size, one included) on the raw SQLite connection; each work runs
        alone (called with a session of its own, which it commits) when the batch fails. `after_commit` runs
        once a batch is committed, before its callers are answered."""
        self.db = db
        self.write_batch = write_batch
        self.after_commit = after_commit
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._scheduled = False

    async def submit(self, work: AcceptWork) -> Any:
        """Run `work` in the next batch; its result once the batch is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._pending.append(_Pending(work, future, loop))
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self.db.executor.submit(self._drain)
        return await future

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        if not batch:
            return
        _settle(self._commit(batch))
        # After the answers: the checkpoint it may start runs on its own thread, but its start need not delay them.
        self.db.committed()

    def _commit(self, batch: list[_Pending]) -> list[_Settled]:
        try:
            # No ORM Session: the batch's statements are the raw connection's, and a Session's bookkeeping around
            # them cost the database thread a tenth of its time.
            with self.db.sqlite_write_transaction() as raw:
                outcomes = self.write_batch(raw, [item.work for item in batch])
        except Exception:  # noqa: BLE001 - whatever it was, each accept is tried again on its own
            return [self._run_alone(item) for item in batch]
        if self.after_commit is not None:
            self.after_commit()
        return [(item, ok, value) for item, (ok, value) in zip(batch, outcomes, strict=True)]

    def _run_alone(self, item: _Pending) -> _Settled:
        try:
            with self.db.session() as session:
                value = item.work(session)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            return item, False, exc
        return item, True, value


def _settle(settled: list[_Settled]) -> None:
    """Answer the callers: one callback per event loop, which wakes it once for all of its callers in the batch
    (a wake-up per caller costs the loop a self-pipe write and a pass of its own)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
    for entry in settled:
        by_loop.setdefault(entry[0].loop, []).append(entry)
    for loop, entries in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, entries)
        except RuntimeError:  # the caller's loop closed (shutdown): its accept stands, nobody waits for the answer
            pass


def _resolve(entries: list[_Settled]) -> None:
    for item, ok, value in entries:
        if item.future.done():  # the caller went away (a cancelled request); its accept stands
            continue
        if ok:
            item.future.set_result(value)
        else:
            item.future.set_exception(value)
