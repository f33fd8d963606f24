"""SQLite's pooled connections are handed out last in, first out: work done one session after another (the group
commit's batches) keeps the one connection, and its page cache."""

from __future__ import annotations

from pathlib import Path

from chatbox.store.database import Database


def test_sessions_one_after_another_reuse_the_connection_returned_last(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'chatbox.db'}")
    try:
        # Two connections in the pool, the first returned first: first in, first out would hand it out next.
        with database.session() as first, database.session() as second:
            first_connection = first.connection().connection.dbapi_connection
            second_connection = second.connection().connection.dbapi_connection
            first.close()
        assert first_connection is not second_connection

        handed_out = []
        for _ in range(3):
            with database.session() as session:
                handed_out.append(session.connection().connection.dbapi_connection)

        assert handed_out == [second_connection] * 3
    finally:
        database.dispose()
