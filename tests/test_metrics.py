"""/metrics reports the queue depth of the runtime serving it, even with several apps in one process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_mailbox
from tests.support.pipeline import post_inbound


@pytest.fixture
def other_runtime(sqlite_template: Path, tmp_path: Path) -> Iterator[Runtime]:
    """A second runtime in this process, on its own (empty) database."""
    database = tmp_path / "other.db"
    shutil.copyfile(sqlite_template, database)
    built = build_runtime(Settings(home=tmp_path / "other", db_url=f"sqlite:///{database}", vault_key=generate_key()))
    try:
        yield built
    finally:
        built.close()


def test_two_apps_in_one_process_each_report_their_own_queue_depth(
    client: TestClient, account: AccountKey, other_runtime: Runtime
) -> None:
    mailbox = create_mailbox(client, account)
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    post_inbound(client, connection, "m-1")
    post_inbound(client, connection, "m-2")

    # Built after `client`'s app: a process-wide reader would now report this runtime's empty queue for both.
    with TestClient(create_app(other_runtime)) as other_client:
        other = other_client.get("/metrics").text
    mine = client.get("/metrics").text

    assert 'chatbox_queue_depth{status="pending"} 2.0' in mine
    assert 'chatbox_queue_depth{status="pending"} 0.0' in other
    assert 'chatbox_deliveries_by_status{status="pending"} 2.0' in mine
