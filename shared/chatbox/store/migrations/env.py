"""Alembic environment: runs against the connection handed over by chatbox.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from chatbox.store.database import normalize_url
from chatbox.store.models import Base

config = context.config
connection = config.attributes.get("connection")


def _configure_and_run(conn: object) -> None:
    context.configure(
        connection=conn,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copy; batch mode keeps one history for both
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _configure_and_run(connection)
else:
    engine = create_engine(normalize_url(config.get_main_option("sqlalchemy.url") or ""))
    with engine.connect() as conn:
        _configure_and_run(conn)
