"""The group commit's transaction on SQLite (`Database.sqlite_write_transaction`): a raw connection from the pool,
under the write lock, committed when the block ends and rolled back when it raises, and back in the pool
either way; another process's view is the test of what was committed."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from chatbox.store.database import Database


class _Refused(Exception):
    pass


def _committed_notes(path: Path) -> list[str]:
    """What a connection of its own (as another process would) reads: only committed rows."""
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute("SELECT body FROM notes ORDER BY id")]
    finally:
        connection.close()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'chatbox.db'}")
    with database.session() as session:
        session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
        session.commit()
    yield database
    database.dispose()


def test_the_block_is_committed_when_it_ends(database: Database, tmp_path: Path) -> None:
    with database.sqlite_write_transaction() as raw:
        raw.executemany("INSERT INTO notes (body) VALUES (?)", [("one",), ("two",)])
        assert _committed_notes(tmp_path / "chatbox.db") == []  # not before the block ends

    assert _committed_notes(tmp_path / "chatbox.db") == ["one", "two"]


def test_a_block_that_raises_is_rolled_back_and_its_connection_reused_clean(database: Database, tmp_path: Path) -> None:
    with pytest.raises(_Refused), database.sqlite_write_transaction() as raw:
        raw.execute("INSERT INTO notes (body) VALUES ('lost')")
        raise _Refused

    with database.sqlite_write_transaction() as again:
        assert again is raw  # the same pooled connection (last in, first out), with nothing of the failed block
        again.execute("INSERT INTO notes (body) VALUES ('kept')")
    assert _committed_notes(tmp_path / "chatbox.db") == ["kept"]
    assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def _writer_lock_is_free(path: Path) -> bool:
    """Whether another process could take the writers' lock (`SqliteWriteLock`'s `flock`) now."""
    fd = os.open(f"{path}.writer", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing lets go of a lock it took
    return True


def test_the_transaction_holds_the_writers_lock_throughout(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "chatbox.db"

    with database.sqlite_write_transaction() as raw:
        held_before_writing = not _writer_lock_is_free(path)
        raw.execute("INSERT INTO notes (body) VALUES ('one')")
        held_after_writing = not _writer_lock_is_free(path)

    assert held_before_writing
    assert held_after_writing
    assert _writer_lock_is_free(path)
