"""Fixtures shared by the whole suite: both database backends, a runtime, an app client, an account."""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.ports import metrics
from chatbox.ports.platforms import PlatformSpec
from chatbox.runtime import Runtime
from chatbox.services.accounts import create_account
from chatbox.store.database import Database
from chatbox.store.migrate import upgrade_to_head
from chatbox.store.models import Base
from connectors import builtin_platforms
from tests.support.postgres import PostgresServer, start_postgres

BACKENDS = ("sqlite", "postgres")


# From the start (collection imports every module of chatbox, its dependencies and the tests), as below.
gc.set_threshold(20_000, 20, 20)


def pytest_collection_finish(session: pytest.Session) -> None:  # noqa: ARG001
    """Move what collection imported (every module of chatbox, its dependencies and the tests) out of the cyclic
    collector's reach, and collect the young generation less often: the suite is CPU-bound on 2 cores, and the
    collector walking that heap thousands of times over a run cost about a third of its CPU (measured on
    test_api_bad_input, test_hostile_input and test_webhook_ingest: 32 s -> 22 s of user time)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


@pytest.fixture(autouse=True)
def _restore_metrics_sink() -> Iterator[None]:
    """A Lambda handler imported by a test installs the EMF sink for the whole process: the next test gets
    the sink it would have had without it."""
    before = metrics.current_sink()
    yield
    metrics.install_sink(before)


def xdist_worker() -> str:
    """The pytest-xdist worker running this process (`gw0`, `gw1`, ...), or `main` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | str]:
    """This worker's Postgres: CHATBOX_TEST_POSTGRES_URL when given, else one started here and stopped after."""
    given = os.environ.get("CHATBOX_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    server = start_postgres(xdist_worker())
    try:
        yield server
    finally:
        server.stop()


def _admin_url(server: PostgresServer | str) -> str:
    return server if isinstance(server, str) else server.url


def _swap_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


def _database_name(kind: str) -> str:
    """Unique per worker and per run, so workers (and suites) sharing a server never collide."""
    return f"chatbox_{kind}_{xdist_worker()}_{os.getpid()}"


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer | str) -> Iterator[str]:
    """This worker's migrated template database (migrated once per worker, never per test)."""
    name = _database_name("template")
    admin = create_engine(_admin_url(postgres_server), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    template = Database(_swap_database(_admin_url(postgres_server), name))
    upgrade_to_head(template.engine)
    template.dispose()
    try:
        yield name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# The schema as the catalog sees it: relations, columns and the migration revision. A test that changes
# any of it gets the database cloned afresh from the template instead of emptied.
_SCHEMA_FINGERPRINT = text(
    """
    SELECT md5(
        (SELECT string_agg(c.relname || ':' || c.relkind::text, ',' ORDER BY c.relname)
         FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace)
        || '|' ||
        (SELECT string_agg(c.relname || '.' || a.attname || ':' || a.atttypid::text || ':' || a.attnotnull::text, ','
                           ORDER BY c.relname, a.attnum)
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped)
        || '|' || (SELECT string_agg(version_num, ',') FROM alembic_version)
    )
    """
)
_OTHER_SESSIONS = text(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


class PostgresTestDatabase:
    """This worker's test database: a clone of its template, emptied before each test that uses it.

    Emptying it (end the sessions the last test left, DELETE every row in foreign-key order, restart
    the sequences) costs Postgres under 10 ms of CPU, where cloning and dropping a database for each
    test cost it 0.1 to 0.3 s: most of the suite's CPU went there. A test that changed the schema
    leaves another fingerprint, and the database is cloned afresh instead.
    """

    def __init__(self, server: PostgresServer | str, template: str) -> None:
        self.admin_url = _admin_url(server)
        self.template = template
        self.name = _database_name("test")
        self.url = _swap_database(self.admin_url, self.name)
        self._admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self._engine = create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self._clone()
        with self._engine.connect() as connection:
            self._fingerprint = connection.execute(_SCHEMA_FINGERPRINT).scalar_one()
            tables = set(
                connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
            )
            sequences = connection.execute(text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"))
            restarts = [f'ALTER SEQUENCE "{sequence}" RESTART' for sequence in sorted(sequences.scalars())]
        # The models' foreign keys give the order; the migrations must not hold a table the models lack.
        assert tables - {"alembic_version"} == set(Base.metadata.tables), "migrations and models name other tables"
        deletes = [f'DELETE FROM "{table.name}"' for table in reversed(Base.metadata.sorted_tables)]
        self._empty = text("; ".join(["BEGIN", "SET LOCAL lock_timeout = '10s'", *deletes, *restarts, "COMMIT"]))
        self._used = False

    def _clone(self) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{self.name}" TEMPLATE "{self.template}"'))

    def fresh(self) -> str:
        """The URL of the database with no rows (as migrated) and no other session."""
        if self._used:
            with self._engine.connect() as connection:
                connection.execute(_OTHER_SESSIONS)
                same_schema = connection.execute(_SCHEMA_FINGERPRINT).scalar_one() == self._fingerprint
                if same_schema:
                    connection.execute(self._empty)
            if not same_schema:
                self._clone()
        self._used = True
        return self.url

    def drop(self) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._engine.dispose()
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres_database(postgres_server: PostgresServer | str, postgres_template: str) -> Iterator[PostgresTestDatabase]:
    database = PostgresTestDatabase(postgres_server, postgres_template)
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    database = Database(f"sqlite:///{path}")
    upgrade_to_head(database.engine)
    database.dispose()
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each backend, with no rows, for one test."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "chatbox.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    database: PostgresTestDatabase = request.getfixturevalue("postgres_database")
    return database.fresh()


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


@pytest.fixture
def admin(runtime: Runtime) -> Iterator[Engine]:
    """Connections of our own beside the runtime's pool (another process, an operator)."""
    engine = create_engine(runtime.db.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def refusing_poison(admin: Engine) -> Iterator[None]:
    """The server refuses to store a message whose text is `poison` (a trigger; the schema is left as it was)."""
    with admin.connect() as db:
        db.execute(
            text(
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.text = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; RETURN NEW; END $$"
            )
        )
        db.execute(
            text("CREATE TRIGGER refuse_poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_poison()")
        )
    try:
        yield
    finally:
        with admin.connect() as db:
            db.execute(text("DROP FUNCTION refuse_poison() CASCADE"))
