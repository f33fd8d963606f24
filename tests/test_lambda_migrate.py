"""The deploy's database step (functions/migrate/handler.py) driven as CloudFormation drives a custom resource:
a recorded event, the answer PUT to its ResponseURL (a stand-in S3 server on 127.0.0.1)."""

from __future__ import annotations

import copy
import importlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings, get_settings
from chatbox.domain.vault import generate_key
from chatbox.store.database import Database
from chatbox.store.migrate import alembic_config, upgrade_to_head
from chatbox.store.schema_version import SCHEMA_HEAD
from tests.conftest import PostgresTestDatabase
from tests.test_lambda_api import LambdaContext

EVENTS = Path(__file__).parent / "events"
HANDLER_MODULE = "functions.migrate.handler"
BOOTSTRAP_KEY = "cbk_" + "k" * 40


@dataclass
class ResponseBucket:
    """Records the PUTs a custom resource makes to its pre-signed response URL."""

    url: str = ""
    answers: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str | None] = field(default_factory=list)


@pytest.fixture
def bucket() -> Iterator[ResponseBucket]:
    recorded = ResponseBucket()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            recorded.answers.append(json.loads(body))
            recorded.content_types.append(self.headers.get("content-type"))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recorded.url = f"http://127.0.0.1:{server.server_address[1]}/stack%7CDatabaseSchema?X-Amz-Signature=abc"
    try:
        yield recorded
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def empty_database(postgres_database: PostgresTestDatabase) -> Iterator[str]:
    """A new Postgres database with no schema at all: what CreateDatabase=true gives the first deploy."""
    name = f"{postgres_database.name}_empty"
    admin = create_engine(postgres_database.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_database.admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, bootstrap_key: str) -> ModuleType:
    for name in [name for name in os.environ if name.startswith("CHATBOX_")]:
        monkeypatch.delenv(name)
    # What the template gives the function (the secrets already resolved: tests/test_aws_secrets.py reads them).
    monkeypatch.setenv("CHATBOX_DB_URL", db_url)
    monkeypatch.setenv("CHATBOX_BOOTSTRAP_API_KEY", bootstrap_key)
    monkeypatch.setenv("CHATBOX_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    sys.modules.pop(HANDLER_MODULE, None)
    return importlib.import_module(HANDLER_MODULE)


@pytest.fixture
def migrate_handler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, empty_database: str) -> Iterator[ModuleType]:
    module = _load(monkeypatch, tmp_path, empty_database, BOOTSTRAP_KEY)
    try:
        yield module
    finally:
        sys.modules.pop(HANDLER_MODULE, None)
        get_settings.cache_clear()


def _event(bucket: ResponseBucket, request_type: str = "Create") -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / "cfn_custom_resource_create.json").read_text()))
    event["ResponseURL"] = bucket.url
    event["RequestType"] = request_type
    return event


@contextmanager
def _api(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    runtime = build_runtime(Settings(home=tmp_path / "api-home", db_url=db_url, vault_key=generate_key()))
    try:
        with TestClient(create_app(runtime)) as client:
            yield client
    finally:
        runtime.close()


def test_first_deploy_migrates_an_empty_database_and_creates_the_first_account_with_the_stacks_key(
    migrate_handler: ModuleType, bucket: ResponseBucket, empty_database: str, tmp_path: Path
) -> None:
    migrate_handler.handler(_event(bucket), LambdaContext(function_name="chatbox-migrate"))

    [answer] = bucket.answers
    assert answer["Status"] == "SUCCESS", answer
    assert (answer["PhysicalResourceId"], answer["LogicalResourceId"]) == ("chatbox-database-schema", "DatabaseSchema")
    assert answer["Data"]["Schema"] == SCHEMA_HEAD and answer["Data"]["FirstAccountId"].startswith("acc")
    assert bucket.content_types == [""]  # what the pre-signed URL was signed for
    with _api(empty_database, tmp_path) as api:
        assert api.get("/health").json() == {"status": "ok", "database": "ok", "schema": "ok"}
        accounts = api.get("/v1/mailboxes", headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"})
        assert accounts.status_code == 200, accounts.text


def test_every_later_deploy_succeeds_and_never_issues_a_second_account(
    migrate_handler: ModuleType, bucket: ResponseBucket
) -> None:
    migrate_handler.handler(_event(bucket), LambdaContext(function_name="chatbox-migrate"))
    migrate_handler.handler(_event(bucket, "Update"), LambdaContext(function_name="chatbox-migrate"))

    first, second = bucket.answers
    assert second["Status"] == "SUCCESS"
    assert second["Data"] == {"Schema": SCHEMA_HEAD, "FirstAccountId": ""}
    assert first["Data"]["FirstAccountId"]


def test_deleting_the_stack_leaves_the_database_alone(
    migrate_handler: ModuleType, bucket: ResponseBucket, empty_database: str
) -> None:
    migrate_handler.handler(_event(bucket, "Delete"), LambdaContext(function_name="chatbox-migrate"))

    assert bucket.answers[0]["Status"] == "SUCCESS"
    engine = Database(empty_database).engine
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar() == 0
    engine.dispose()


def test_an_unreachable_database_fails_the_deploy_without_its_url_in_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bucket: ResponseBucket
) -> None:
    url = "postgresql+psycopg://chatbox:hunter2-secret@127.0.0.1:1/chatbox"
    module = _load(monkeypatch, tmp_path, url, BOOTSTRAP_KEY)
    try:
        module.handler(_event(bucket), LambdaContext(function_name="chatbox-migrate"))
    finally:
        sys.modules.pop(HANDLER_MODULE, None)
        get_settings.cache_clear()

    [answer] = bucket.answers
    assert answer["Status"] == "FAILED"
    assert "OperationalError" in answer["Reason"] and "hunter2" not in json.dumps(answer)


def test_health_reports_a_schema_behind_the_code(db_url: str, tmp_path: Path) -> None:
    database = Database(db_url)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    database.dispose()

    try:
        with _api(db_url, tmp_path) as api:
            response = api.get("/health")
    finally:  # the next test's emptying keeps alembic_version's row
        database = Database(db_url)
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": SCHEMA_HEAD})
        database.dispose()

    assert response.status_code == 503
    assert response.json()["schema"].startswith("not at head: database at 0003, code expects")


def test_schema_head_names_the_newest_migration() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD


def test_concurrent_migrations_of_an_empty_database_both_succeed(empty_database: str) -> None:
    # Two deploys (or a deploy and `chatbox migrate`) at once: the advisory lock runs them one after the other.
    errors: list[BaseException] = []

    def migrate() -> None:
        database = Database(empty_database)
        try:
            upgrade_to_head(database.engine)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            database.dispose()

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    engine = Database(empty_database).engine
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == SCHEMA_HEAD
    engine.dispose()
