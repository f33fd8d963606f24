"""The models and migrations on both backends: constraints, types, and models matching migrations."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from chatbox.domain.ids import hash_token, new_id, new_token
from chatbox.runtime import Runtime
from chatbox.store.database import Database, release_before_network_call
from chatbox.store.migrate import alembic_config, upgrade_to_head
from chatbox.store.models import Account, ApiKey, Base, Chat, Connection, Delivery, Mailbox, Message
from chatbox.store.types import utcnow
from tests.conftest import BACKENDS
from tests.support.postgres import PostgresServer

_empty_databases = count()


def _head() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"the migration history has several heads: {heads}"
    return heads[0]


def _current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each backend with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: PostgresServer | str = request.getfixturevalue("postgres_server")
    admin_url = server if isinstance(server, str) else server.url
    name = f"empty_{os.getpid()}_{next(_empty_databases)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def empty_db(empty_db_url: str) -> Iterator[Database]:
    database = Database(empty_db_url)
    try:
        yield database
    finally:
        database.dispose()


# --- migrations ---------------------------------------------------------------------------


def test_migration_history_has_a_single_head() -> None:
    assert _head()


def test_migrations_build_every_table_from_scratch(empty_db: Database) -> None:
    upgrade_to_head(empty_db.engine)

    tables = set(inspect(empty_db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert _current_revision(empty_db) == _head()


def test_migrating_twice_changes_nothing(empty_db: Database) -> None:
    upgrade_to_head(empty_db.engine)
    tables_before = set(inspect(empty_db.engine).get_table_names())

    upgrade_to_head(empty_db.engine)

    assert set(inspect(empty_db.engine).get_table_names()) == tables_before
    assert _current_revision(empty_db) == _head()


def test_migrations_downgrade_to_nothing_and_back(empty_db: Database) -> None:
    upgrade_to_head(empty_db.engine)
    config = alembic_config()

    with empty_db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    remaining = set(inspect(empty_db.engine).get_table_names()) - {"alembic_version"}
    upgrade_to_head(empty_db.engine)

    assert remaining == set()
    assert _current_revision(empty_db) == _head()


def test_models_match_the_migrated_schema(runtime: Runtime) -> None:
    with runtime.db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


# --- a small graph of rows -----------------------------------------------------------------


def _account(db: Session) -> Account:
    account = Account(id=new_id("account"), name="acme")
    db.add(account)
    db.flush()
    return account


def _mailbox(db: Session, account: Account, **fields: Any) -> Mailbox:
    mailbox = Mailbox(
        id=new_id("mailbox"), account_id=account.id, name="agent", mcp_token_hash=hash_token(new_token("mcp")), **fields
    )
    db.add(mailbox)
    db.flush()
    return mailbox


def _connection(db: Session, mailbox: Mailbox, platform: str = "telegram", status: str = "active") -> Connection:
    connection = Connection(
        id=new_id("connection"),
        account_id=mailbox.account_id,
        mailbox_id=mailbox.id,
        platform=platform,
        inbound_token_hash=hash_token(new_token("inb")),
        status=status,
    )
    db.add(connection)
    db.flush()
    return connection


def _chat(db: Session, connection: Connection, external_id: str = "42") -> Chat:
    chat = Chat(
        id=new_id("chat"),
        connection_id=connection.id,
        mailbox_id=connection.mailbox_id,
        platform=connection.platform,
        external_id=external_id,
    )
    db.add(chat)
    db.flush()
    return chat


def _message(db: Session, chat: Chat, external_id: str | None = "1001", direction: str = "in") -> Message:
    message = Message(
        id=new_id("message"), chat_id=chat.id, connection_id=chat.connection_id, direction=direction,
        external_id=external_id, text="hello",
    )  # fmt: skip
    db.add(message)
    db.flush()
    return message


def _delivery(db: Session, message: Message, chat: Chat) -> Delivery:
    delivery = Delivery(id=new_id("delivery"), message_id=message.id, mailbox_id=chat.mailbox_id, chat_id=chat.id)
    db.add(delivery)
    db.flush()
    return delivery


# --- constraints ---------------------------------------------------------------------------


def test_api_key_hash_is_unique(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        account = _account(db)
        key_hash = hash_token("cbk_same")
        db.add(ApiKey(id=new_id("api_key"), account_id=account.id, name="a", prefix="cbk_", key_hash=key_hash))
        db.flush()
        db.add(ApiKey(id=new_id("api_key"), account_id=account.id, name="b", prefix="cbk_", key_hash=key_hash))

        with pytest.raises(IntegrityError):
            db.flush()


def test_chat_external_id_is_unique_per_connection(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        mailbox = _mailbox(db, _account(db))
        telegram, slack = _connection(db, mailbox, "telegram"), _connection(db, mailbox, "slack")
        _chat(db, telegram, "42")
        _chat(db, slack, "42")  # the same platform id on another connection is another chat
        db.commit()

        with pytest.raises(IntegrityError):
            _chat(db, telegram, "42")


def test_message_is_accepted_once_per_connection_and_direction(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        chat = _chat(db, _connection(db, _mailbox(db, _account(db))))
        _message(db, chat, "1001", "in")
        _message(db, chat, "1001", "out")  # an outbound message may carry the same platform id
        db.commit()

        with pytest.raises(IntegrityError):
            _message(db, chat, "1001", "in")


def test_messages_without_an_external_id_may_repeat(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        chat = _chat(db, _connection(db, _mailbox(db, _account(db))))

        _message(db, chat, None, "out")
        _message(db, chat, None, "out")
        db.commit()

        assert len(list(db.scalars(select(Message.id).where(Message.chat_id == chat.id)))) == 2


def test_message_is_delivered_once_per_mailbox(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        chat = _chat(db, _connection(db, _mailbox(db, _account(db))))
        message = _message(db, chat)
        _delivery(db, message, chat)
        db.commit()

        with pytest.raises(IntegrityError):
            _delivery(db, message, chat)


def test_mailbox_has_at_most_one_active_connection_per_platform(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        mailbox = _mailbox(db, _account(db))
        _connection(db, mailbox, "telegram", "active")
        _connection(db, mailbox, "slack", "active")  # another platform is fine
        db.commit()

        with pytest.raises(IntegrityError):
            _connection(db, mailbox, "telegram", "active")


def test_archived_connections_of_a_platform_may_repeat(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        mailbox = _mailbox(db, _account(db))
        other_mailbox = _mailbox(db, _account(db))

        _connection(db, mailbox, "telegram", "archived")
        _connection(db, mailbox, "telegram", "archived")
        _connection(db, mailbox, "telegram", "active")
        _connection(db, other_mailbox, "telegram", "active")
        db.commit()

        statuses = sorted(db.scalars(select(Connection.status).where(Connection.mailbox_id == mailbox.id)))
        assert statuses == ["active", "archived", "archived"]


def test_archiving_frees_the_platform_slot(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        mailbox = _mailbox(db, _account(db))
        first = _connection(db, mailbox, "telegram", "active")
        db.commit()

        first.status = "archived"
        db.commit()
        second = _connection(db, mailbox, "telegram", "active")
        db.commit()

        assert second.status == "active"


def test_foreign_keys_are_enforced(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        db.add(Mailbox(id=new_id("mailbox"), account_id=new_id("account"), name="orphan", mcp_token_hash="x" * 64))

        with pytest.raises(IntegrityError):
            db.flush()


# --- column types --------------------------------------------------------------------------


def test_datetimes_come_back_timezone_aware_in_utc(runtime: Runtime) -> None:
    seen_in_tokyo = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=9)))
    with runtime.db.session() as db:
        chat = _chat(db, _connection(db, _mailbox(db, _account(db))))
        chat.last_activity_at = seen_in_tokyo
        db.commit()
        chat_id = chat.id

    with runtime.db.session() as db:
        stored = db.get_one(Chat, chat_id)

    assert stored.last_activity_at is not None
    assert stored.last_activity_at.utcoffset() == timedelta(0)
    assert stored.last_activity_at == seen_in_tokyo
    assert stored.last_activity_at.replace(tzinfo=None) == datetime(2026, 3, 1, 0, 30, 15, 123456)
    assert stored.created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - stored.created_at) < timedelta(minutes=5)


def test_naive_datetimes_are_refused(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        chat = _chat(db, _connection(db, _mailbox(db, _account(db))))
        chat.last_activity_at = datetime(2026, 3, 1, 9, 30)

        with pytest.raises(StatementError, match="naive datetime"):
            db.flush()


def test_json_columns_roundtrip(runtime: Runtime) -> None:
    config = {"bot": {"name": "Zoë 🤖", "ids": [1, 2.5, None], "enabled": True}, "empty": {}, "list": []}
    attachments = [{"kind": "image", "url": "https://example.test/a.png", "size": 12345, "meta": {"w": 1}}]
    templates = {"message": "{{ sender }}: {{ text }}"}
    with runtime.db.session() as db:
        mailbox = _mailbox(db, _account(db), templates=templates)
        connection = _connection(db, mailbox)
        connection.config = config
        connection.secret_refs = {"bot_token": new_id("credential")}
        message = _message(db, _chat(db, connection))
        message.attachments = attachments
        db.commit()
        ids = (mailbox.id, connection.id, message.id, connection.secret_refs)

    with runtime.db.session() as db:
        stored_mailbox = db.get_one(Mailbox, ids[0])
        stored_connection = db.get_one(Connection, ids[1])
        stored_message = db.get_one(Message, ids[2])

    assert stored_mailbox.templates == templates
    assert stored_connection.config == config
    assert stored_connection.secret_refs == ids[3]
    assert stored_message.attachments == attachments


def test_json_columns_default_to_empty_containers(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        message = _message(db, _chat(db, _connection(db, _mailbox(db, _account(db)))))
        db.commit()
        message_id, mailbox_id = message.id, message.chat_id

    with runtime.db.session() as db:
        stored = db.get_one(Message, message_id)
        chat = db.get_one(Chat, mailbox_id)
        mailbox = db.get_one(Mailbox, chat.mailbox_id)

    assert stored.attachments == []
    assert mailbox.templates == {}


def test_chat_address_is_platform_and_external_id(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        chat = _chat(db, _connection(db, _mailbox(db, _account(db)), "signal"), "+15551234567")

        assert chat.address == "signal:+15551234567"


def test_releasing_before_a_network_call_refuses_to_drop_uncommitted_changes(runtime: Runtime) -> None:
    with runtime.db.session() as db:
        db.add(Account(id=new_id("account"), name="pending"))

        with pytest.raises(RuntimeError, match="commit them first"):
            release_before_network_call(db)
        db.commit()
        release_before_network_call(db)  # nothing pending: the read transaction simply ends

        assert not db.in_transaction()


def test_migrating_merges_chats_split_by_a_recreated_connection(empty_db: Database) -> None:
    config = alembic_config()
    with empty_db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
    now = utcnow()
    rows = {"now": now, "mcp": hash_token(new_token("mcp"))}
    with empty_db.engine.begin() as connection:
        statements = [
            "INSERT INTO accounts (id, name, created_at) VALUES ('acct_1', 'acme', :now)",
            "INSERT INTO mailboxes (id, account_id, name, templates, mcp_token_hash, status, consecutive_failures, "
            "created_at, updated_at, focal_chat_id) VALUES ('mbx_1', 'acct_1', 'agent', '{}', :mcp, 'active', 0, "
            ":now, :now, 'chat_1')",
        ]
        for number, status in ((1, "archived"), (2, "active")):
            statements += [
                f"INSERT INTO connections (id, account_id, mailbox_id, platform, config, secret_refs, "
                f"inbound_token_hash, status, created_at, updated_at) VALUES ('conn_{number}', 'acct_1', 'mbx_1', "
                f"'telegram', '{{}}', '{{}}', 'hash{number}', '{status}', :now, :now)",
                f"INSERT INTO chats (id, connection_id, mailbox_id, platform, external_id, type, muted, unread_count, "
                f"created_at) VALUES ('chat_{number}', 'conn_{number}', 'mbx_1', 'telegram', '42', 'direct', false, "
                f"{number}, :now)",
                f"INSERT INTO messages (id, chat_id, connection_id, direction, attachments, event_type, received_at) "
                f"VALUES ('msg_{number}', 'chat_{number}', 'conn_{number}', 'in', '[]', 'message', :now)",
            ]
        for statement in statements:
            connection.execute(text(statement), rows)

    upgrade_to_head(empty_db.engine)

    with empty_db.engine.connect() as connection:
        chats = connection.execute(text("SELECT id, unread_count FROM chats")).all()
        message_chats = set(connection.execute(text("SELECT chat_id FROM messages")).scalars())
        focal = connection.execute(text("SELECT focal_chat_id FROM mailboxes")).scalar_one()
    assert [tuple(row) for row in chats] == [("chat_2", 3)]
    assert message_chats == {"chat_2"}
    assert focal == "chat_2"
