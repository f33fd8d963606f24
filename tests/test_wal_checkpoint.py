"""On a SQLite file the write-ahead log is copied into the database file by a thread of its own, soon after a
group commit, so no accept's commit pays a checkpoint; the writers keep a high threshold of their own as a
backstop."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from sqlalchemy import text

from chatbox.store.database import Database
from chatbox.store.wal_checkpoint import WAL_AUTOCHECKPOINT_PAGES, WalCheckpointer
from tests.support.pipeline import eventually


def _rows_in_database_file_alone(path: Path, copy: Path) -> int:
    """The rows a reader finds in the database file without its log: what checkpoints have copied there."""
    shutil.copyfile(path, copy)
    connection = sqlite3.connect(copy)
    try:
        count: int = connection.execute("SELECT count(*) FROM notes").fetchone()[0]
    except sqlite3.OperationalError:  # not even the table is there yet
        return -1
    finally:
        connection.close()
    return count


def test_a_commit_is_checkpointed_into_the_database_file_by_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "chatbox.db"
    database = Database(f"sqlite:///{path}")
    try:
        with database.session() as session:
            session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
            session.commit()
        database.committed()
        eventually(lambda: _rows_in_database_file_alone(path, tmp_path / "schema.db") == 0)
        with database.session() as session:
            session.execute(text("INSERT INTO notes (body) VALUES ('one'), ('two'), ('three')"))
            session.commit()
        assert _rows_in_database_file_alone(path, tmp_path / "before.db") == 0  # in the log only, so far

        database.committed()

        eventually(lambda: _rows_in_database_file_alone(path, tmp_path / "after.db") == 3)
        checkpointer = database.checkpointer
        assert checkpointer is not None
        eventually(lambda: checkpointer.checkpoints >= 1)  # counted once the checkpoint returned
    finally:
        database.dispose()


def test_writers_checkpoint_by_themselves_only_past_the_backstop(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'chatbox.db'}")
    try:
        with database.engine.connect() as connection:
            pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == WAL_AUTOCHECKPOINT_PAGES
    finally:
        database.dispose()


def test_disposing_the_database_stops_its_checkpointer(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'chatbox.db'}")
    checkpointer = database.checkpointer
    assert checkpointer is not None
    database.committed()

    database.dispose()

    thread = checkpointer._thread  # noqa: SLF001 - the thread itself is what must be gone
    assert thread is not None
    assert not thread.is_alive()


def test_enough_commits_start_a_checkpoint_before_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "chatbox.db"
    database = Database(f"sqlite:///{path}")
    # An interval far beyond the wait below: only the count of commits can start this checkpoint.
    checkpointer = WalCheckpointer(str(path), commits=3, interval=3600)
    try:
        with database.session() as session:
            session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
            session.commit()
            for number in range(3):
                session.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": f"note {number}"})
                session.commit()
                checkpointer.committed()

        eventually(lambda: _rows_in_database_file_alone(path, tmp_path / "copy.db") == 3)
        eventually(lambda: checkpointer.checkpoints == 1)  # counted once the checkpoint returned
    finally:
        checkpointer.stop()
        database.dispose()
