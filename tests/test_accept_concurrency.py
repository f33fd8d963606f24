"""Accepting on both backends: concurrent copies are stored once, the new chat's event once, and on Postgres
an accept succeeds right after the server dropped every pooled connection (no ping per checkout)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from chatbox.domain.normalized import AcceptResult, InboundMessage
from chatbox.runtime import Runtime
from chatbox.services.inbound import accept_inbound
from chatbox.store.models import Chat, Delivery, Message, QueueMessage, ServiceEvent
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_mailbox

DISTINCT = 40


@pytest.fixture
def connection(client: TestClient, account: AccountKey) -> dict[str, Any]:
    mailbox = create_mailbox(client, account, webhook_url="https://agent.example.test/hook")
    return create_connection(client, account, mailbox["id"], platform="signal")


def _accept(runtime: Runtime, connection_id: str, external_id: str) -> AcceptResult:
    inbound = InboundMessage(external_chat_id="c-1", external_message_id=external_id, text=f"text of {external_id}")
    with runtime.db.session() as db:
        return accept_inbound(db, runtime.queue, connection_id, inbound)


def test_concurrent_copies_are_stored_once_with_one_delivery_and_one_new_chat_event(
    runtime: Runtime, connection: dict[str, Any]
) -> None:
    external_ids = [f"m-{n}" for n in range(DISTINCT)]
    posts = external_ids + [f"m-{n}" for n in range(0, DISTINCT, 2)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda external_id: _accept(runtime, connection["id"], external_id), posts))

    by_external: dict[str, set[str]] = {}
    for external_id, result in zip(posts, results, strict=True):
        assert result.message_id and result.chat_id == "signal:c-1"
        by_external.setdefault(external_id, set()).add(result.message_id)
    # Every copy answers with the id of the one message stored.
    assert all(len(ids) == 1 for ids in by_external.values())
    assert sum(1 for result in results if result.duplicate) == len(posts) - DISTINCT
    with runtime.db.session() as db:
        assert db.scalar(select(func.count()).select_from(Message)) == DISTINCT
        assert db.scalar(select(func.count()).select_from(Delivery)) == DISTINCT
        assert db.scalar(select(func.count()).select_from(QueueMessage)) == DISTINCT
        chat = db.scalars(select(Chat)).one()
        # A copy's touch of the chat is undone with it.
        assert chat.unread_count == DISTINCT
        events = db.scalars(select(ServiceEvent).where(ServiceEvent.type == "new_chat")).all()
        assert [event.data["chat_id"] for event in events] == ["signal:c-1"]


def test_an_accept_after_the_server_dropped_its_connections_succeeds(
    runtime: Runtime, connection: dict[str, Any], db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("a server-side disconnect is Postgres's")
    assert not _accept(runtime, connection["id"], "before").duplicate
    admin_engine = create_engine(runtime.db.url, poolclass=NullPool)
    with admin_engine.connect() as admin:
        dropped = admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    admin_engine.dispose()
    assert dropped >= 1  # the pool held the first accept's connection

    after = _accept(runtime, connection["id"], "after")

    assert not after.duplicate
    with runtime.db.session() as db:
        stored = db.scalars(select(Message.external_id).order_by(Message.external_id)).all()
    assert stored == ["after", "before"]
