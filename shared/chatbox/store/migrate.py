"""Apply the migration history to a database (what `chatbox migrate` runs)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
# A Postgres advisory lock key of chatbox's own ("chatbox" in ASCII): concurrent migrations (a deploy's
# migrate function, `chatbox migrate`, `chatbox dev` starting) run one after the other.
MIGRATION_LOCK_KEY = 0x63686174626F78


def alembic_config(url: str = "") -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest revision in one transaction; safe to run on every start."""
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


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty one)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision this code ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
