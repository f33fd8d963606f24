"""Which schema revision the code expects and the database holds, read without loading alembic.

`/health` reports a database the deploy did not migrate; alembic (and its templates) stay out of the
functions' cold starts. `tests/test_store.py` holds `SCHEMA_HEAD` to the migration history's head.
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

# The newest revision in chatbox/store/migrations/versions.
SCHEMA_HEAD = "0008"


def database_revision(connection: Connection) -> str | None:
    """The revision the database was migrated to; None when it never was (no alembic_version table)."""
    try:
        with connection.begin_nested():
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None
