"""Persistence: SQLAlchemy models, engine set-up and migrations, portable across Postgres and SQLite."""
