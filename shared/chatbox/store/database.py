"""Engine and session factory for a database URL; SQLite gets WAL and enforced foreign keys."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    from chatbox.store.wal_checkpoint import WalCheckpointer

P = ParamSpec("P")
T = TypeVar("T")


# Below the usual idle timeouts of proxies and load balancers in front of a server (RDS Proxy: 30 min).
_RECYCLE_SECONDS = 600


def normalize_url(url: str) -> str:
    """Accept the plain `postgresql://` form and use psycopg 3 for it."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Imported here, as `_checkpointer_for` does: only a SQLite process loads sqlite3 (the Lambda functions' cold
    # starts on Postgres do not).
    from chatbox.store.wal_checkpoint import WAL_AUTOCHECKPOINT_PAGES

    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # A backstop: the checkpoints are `WalCheckpointer`'s, off the writers' path.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.close()


def create_db_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    """`hide_parameters`: a statement's parameters (webhook URLs, message text) stay out of SQLAlchemy's
    errors and log lines, which end up in ours. `pool_size`/`max_overflow` apply to servers (SQLite keeps its
    own sizing); a pool size of 0 keeps no connection between sessions (NullPool: behind RDS Proxy)."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Enough pooled connections for every request thread: an overflow connection is closed on
        # return, and reconnecting (with its pragmas) on every request is a large share of the work.
        # Last in, first out: the group commit's batches, one after another on the database thread, get the same
        # connection, whose page cache is still valid (nobody else wrote), instead of the one idle longest, which
        # re-reads ~140 pages (a `pread` each) per batch of 32 messages.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=48,
            max_overflow=16,
            pool_use_lifo=True,
            hide_parameters=True,
        )
        event.listen(engine, "connect", _enable_sqlite_pragmas)
        return engine
    if pool_size == 0:
        return create_engine(url, poolclass=NullPool, hide_parameters=True)
    # No ping per checkout (a round trip on every accept): connections are recycled before a server or
    # proxy idle timeout would drop them, and one dropped anyway fails its statement, which makes the pool
    # discard every connection it had (the accept then runs again: `services/inbound_postgres.py`).
    return create_engine(
        url,
        pool_recycle=_RECYCLE_SECONDS,
        pool_size=pool_size,
        max_overflow=max_overflow,
        hide_parameters=True,
    )


class SqliteWriteLock:
    """One writer at a time on a SQLite database: across this process's threads (a thread lock) and across
    processes (`flock` on `<database>.writer`, for `chatbox api --workers N` and the worker beside the API).

    A writer waiting here is woken the moment the holder lets go; one colliding inside SQLite instead waits in
    its busy handler, which sleeps in growing steps (up to 100 ms) while the lock may already be free.
    """

    def __init__(self, database: str | None) -> None:
        self._thread_lock = threading.Lock()
        self._path = None if not database or database == ":memory:" else Path(f"{database}.writer")
        self._fd: int | None = None

    def __enter__(self) -> SqliteWriteLock:
        self._thread_lock.acquire()
        if self._path is None:
            return self
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


_sqlite_write_locks: weakref.WeakKeyDictionary[Engine, SqliteWriteLock] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def _write_lock(engine: Engine) -> AbstractContextManager[object]:
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _guard:
        lock = _sqlite_write_locks.get(engine)
        if lock is None:
            lock = _sqlite_write_locks[engine] = SqliteWriteLock(engine.url.database)
        return lock


def _checkpointer_for(engine: Engine) -> WalCheckpointer | None:
    """A SQLite file's WAL checkpointer (started by its first `committed`); None for anything else."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    from chatbox.store.wal_checkpoint import WalCheckpointer

    return WalCheckpointer(database)


class Database:
    """An engine plus its session factory; one per process."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.url = normalize_url(url)
        self.engine = create_db_engine(self.url, pool_size=pool_size, max_overflow=max_overflow)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._executor: ThreadPoolExecutor | None = None
        self.checkpointer = _checkpointer_for(self.engine)

    @property
    def executor(self) -> ThreadPoolExecutor:
        """Threads for hot-path database work from async code. One on SQLite, its single writer,
        so requests queue in order instead of contending for the lock; more elsewhere."""
        if self._executor is None:
            # Imported here: a process that never bridges async code to the database (most of the Lambda
            # functions' cold starts) does not load the thread pool's modules.
            from concurrent.futures import ThreadPoolExecutor

            workers = 1 if self.engine.dialect.name == "sqlite" else 16
            self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="db")
        return self._executor

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking database work from async code on `executor`: the one bridge from an event loop to
        the database (keyword arguments allowed)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: function(*args, **kwargs))

    @staticmethod
    def write_lock_for(db: Session) -> AbstractContextManager[object]:
        """Serialize write transactions on SQLite, of this process's threads and of other processes on the same
        file (`SqliteWriteLock`; a no-op elsewhere).

        SQLite has one writer at a time; writers that collide otherwise wait in its busy handler,
        which sleeps in growing steps and leaves the lock idle meanwhile.
        """
        bind = db.get_bind()
        return _write_lock(bind if isinstance(bind, Engine) else bind.engine)

    def session(self) -> Session:
        return self.sessions()

    @contextmanager
    def sqlite_write_transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on a pooled connection's own `sqlite3` connection, under the write lock, with no
        ORM Session around it: committed when the block ends, rolled back if it raises, and the connection
        handed back to the pool either way.

        For the group commit's batch (`chatbox.services.group_commit`), whose statements are SQL text on the raw
        connection already: a Session around them (its autobegin, connection checkout and commit machinery) cost
        more Python on the database thread than its statements did. The transaction starts as the driver starts
        it under a Session too: `sqlite3` issues a deferred `BEGIN` before the first write, and the write lock,
        held from before the first read, keeps cooperating writers out until the commit.

        Raises TypeError when the database is not SQLite."""
        import sqlite3  # only a SQLite process loads it (see `_enable_sqlite_pragmas`)

        pooled = self.engine.raw_connection()
        try:
            raw = pooled.driver_connection
            if not isinstance(raw, sqlite3.Connection):
                raise TypeError("the database is not SQLite")
            with _write_lock(self.engine):
                try:
                    yield raw
                    raw.commit()
                except BaseException:
                    raw.rollback()
                    raise
        finally:
            pooled.close()

    def committed(self) -> None:
        """Hot-path writers (the group commit) call this after a commit: on a SQLite file, the WAL is
        checkpointed soon after on a thread of its own (`WalCheckpointer`), not inside a later commit."""
        if self.checkpointer is not None:
            self.checkpointer.committed()

    def dispose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()


def release_before_network_call(db: Session) -> None:
    """End the session's read-only transaction before a call to a platform or a webhook receiver.

    The one way chatbox keeps database locks and pooled connections free while it waits on the network
    (a slow platform must never hold SQLite's writer or a Postgres connection). Nothing may be pending:
    whatever must survive the call is committed first, or written after it. Loaded objects expire and
    reload on their next use.
    """
    if db.new or db.dirty or db.deleted:
        raise RuntimeError("uncommitted changes before a network call: commit them first, or write after it")
    db.rollback()
