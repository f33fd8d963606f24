"""Database connections from Lambda: a ceiling per instance the template sets, and RDS Proxy's endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool, QueuePool

from chatbox.adapters.aws_secrets import database_url_from_secret
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from tests.conftest import PostgresTestDatabase


def _settings(db_url: str, tmp_path: Path, **overrides: object) -> Settings:
    return Settings(home=tmp_path / "home", db_url=db_url, vault_key=generate_key()).model_copy(update=overrides)


@pytest.fixture
def postgres_url(postgres_database: PostgresTestDatabase) -> str:
    return postgres_database.fresh()


def test_lambda_pool_of_one_keeps_one_connection_and_may_open_one_more(postgres_url: str, tmp_path: Path) -> None:
    runtime = build_runtime(_settings(postgres_url, tmp_path, db_pool_size=1, db_max_overflow=1))
    try:
        pool = runtime.db.engine.pool
        assert isinstance(pool, QueuePool)
        with runtime.db.session() as first, runtime.db.session() as second:
            first.execute(text("select 1"))
            second.execute(text("select 1"))
            assert pool.checkedout() == 2
        assert pool.checkedin() == 1  # the overflow connection is closed on return
    finally:
        runtime.close()


def test_pool_size_zero_keeps_no_connection(postgres_url: str, tmp_path: Path) -> None:
    runtime = build_runtime(_settings(postgres_url, tmp_path, db_pool_size=0))
    try:
        assert isinstance(runtime.db.engine.pool, NullPool)
        with runtime.db.session() as db:
            assert db.execute(text("select 1")).scalar() == 1
    finally:
        runtime.close()


def test_pool_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOX_DB_POOL_SIZE", "1")
    monkeypatch.setenv("CHATBOX_DB_MAX_OVERFLOW", "0")
    settings = Settings()
    assert (settings.db_pool_size, settings.db_max_overflow) == (1, 0)


def test_rds_proxy_endpoint_replaces_the_secrets_host_and_keeps_its_credentials() -> None:
    secret = json.dumps({"username": "chatbox", "password": "p@ss", "host": "cluster.example", "port": 5432})

    url = database_url_from_secret(secret, host="proxy.example")

    assert url == "postgresql+psycopg://chatbox:p%40ss@proxy.example:5432/postgres"
