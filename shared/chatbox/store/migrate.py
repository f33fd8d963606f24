"""Apply the migration history to a database (what `chatbox migrate` runs).

Alembic (with mako and pygments) is imported by the functions that run it: it is about a tenth of every `chatbox`
command's start, and most commands (and every request) never migrate.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text

from chatbox.store.schema_version import SCHEMA_HEAD, database_revision

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# A Postgres advisory lock key of chatbox's own ("chatbox" in ASCII): concurrent migrations (a deploy's
# migrate function, `chatbox migrate`, `chatbox dev` starting) run one after the other.
MIGRATION_LOCK_KEY = 0x63686174626F78


def alembic_config(url: str = "") -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest revision in one transaction; safe to run on every start."""
    # At head (every start but the first after a deploy) there is nothing to run: alembic would load every
    # revision script to find that out.
    with engine.connect() as connection:
        if database_revision(connection) == SCHEMA_HEAD:
            return
    from alembic import command

    config = alembic_config()
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Python's sqlite3 runs DDL outside any transaction, so a migration failing halfway would
            # leave tables behind with no version recorded. Open the transaction ourselves.
            driver = connection.connection.driver_connection
            connection.connection.detach()  # this connection's settings must not return to the pool
            driver.isolation_level = None  # type: ignore[union-attr]
            connection.exec_driver_sql("BEGIN")
        else:
            connection.begin()
            # Held until the commit below; a second migrator then finds the schema at head and does nothing.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
