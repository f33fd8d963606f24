"""Fixtures shared by the whole suite: both database backends, a runtime, an app client, an account."""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.ports.platforms import PlatformSpec
from chatbox.runtime import Runtime
from chatbox.services.accounts import create_account
from chatbox.store.database import Database
from chatbox.store.migrate import upgrade_to_head
from connectors import builtin_platforms
from tests.support.postgres import PostgresServer, start_postgres

BACKENDS = ("sqlite", "postgres")
_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | str]:
    """The suite's Postgres: CHATBOX_TEST_POSTGRES_URL when given, else one started here and stopped after."""
    given = os.environ.get("CHATBOX_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def _admin_url(server: PostgresServer | str) -> str:
    return server if isinstance(server, str) else server.url


def _swap_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer | str) -> str:
    """A migrated template database; each test gets a fresh copy of it (fast on Postgres)."""
    admin = create_engine(_admin_url(postgres_server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS chatbox_template"))
        connection.execute(text("CREATE DATABASE chatbox_template"))
    admin.dispose()
    template = Database(_swap_database(_admin_url(postgres_server), "chatbox_template"))
    upgrade_to_head(template.engine)
    template.dispose()
    return "chatbox_template"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    database = Database(f"sqlite:///{path}")
    upgrade_to_head(database.engine)
    database.dispose()
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each backend for one test."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "chatbox.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    server = request.getfixturevalue("postgres_server")
    template_name = request.getfixturevalue("postgres_template")
    name = f"test_{os.getpid()}_{next(_counter)}"
    admin = create_engine(_admin_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE {template_name}'))
    try:
        yield _swap_database(_admin_url(server), name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
    )


def platforms_without_connectors() -> list[PlatformSpec]:
    """The built-in platforms as seen by a process that runs none of their in-process connectors: names,
    modes and requirements, but creating a Telegram connection calls no Telegram (tests needing the
    connectors compose them against stand-in servers, as tests/test_webhook_ingest.py does)."""
    return [dataclasses.replace(spec, connector=None) for spec in builtin_platforms()]


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    built = build_runtime(settings, platforms=platforms_without_connectors())
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


@dataclass(frozen=True)
class AccountKey:
    account_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def make_account(runtime: Runtime, name: str = "acme") -> AccountKey:
    with runtime.db.session() as db:
        issued = create_account(db, name)
    return AccountKey(issued.account_id, issued.secret)


@pytest.fixture
def account(runtime: Runtime) -> AccountKey:
    return make_account(runtime, "acme")


@pytest.fixture
def other_account(runtime: Runtime) -> AccountKey:
    return make_account(runtime, "globex")
