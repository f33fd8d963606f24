"""/metrics reports the queue depth of the runtime serving it, even with several apps in one process, and answers
only a loopback client, or the bearer of CHATBOX_METRICS_TOKEN when the deployment sets one."""

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
from tests.support.api import assert_error, create_connection, create_mailbox, scrape_metrics
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
        other = scrape_metrics(other_client).text
    mine = scrape_metrics(client).text

    assert 'chatbox_queue_depth{status="pending"} 2.0' in mine
    assert 'chatbox_queue_depth{status="pending"} 0.0' in other
    assert 'chatbox_deliveries_by_status{status="pending"} 2.0' in mine


METRICS_TOKEN = "metrics-token-for-tests-5b2e9d0c"


@pytest.fixture
def guarded_client(settings: Settings) -> Iterator[TestClient]:
    """An app whose deployment sets CHATBOX_METRICS_TOKEN."""
    built = build_runtime(settings.model_copy(update={"metrics_token": METRICS_TOKEN}))
    try:
        with TestClient(create_app(built)) as guarded:
            yield guarded
    finally:
        built.close()


@pytest.mark.parametrize(
    ("peer", "headers"),
    [
        (("203.0.113.7", 40000), {}),
        (("10.0.0.8", 40000), {}),
        (("testclient", 50000), {}),
        (("127.0.0.1", 40000), {"X-Forwarded-For": "203.0.113.7"}),
        (("::1", 40000), {"Forwarded": "for=203.0.113.7"}),
    ],
    ids=["public", "private", "not-an-address", "proxied-v4", "proxied-v6"],
)
def test_without_a_token_metrics_refuse_anyone_but_a_local_client(
    client: TestClient, peer: tuple[str, int], headers: dict[str, str]
) -> None:
    response = TestClient(client.app, client=peer).get("/metrics", headers=headers)

    body = assert_error(response, 403, "forbidden")
    assert "CHATBOX_METRICS_TOKEN" in body["message"]
    assert "chatbox_http_requests" not in response.text


@pytest.mark.parametrize("peer", [("127.0.0.1", 40000), ("::1", 40000), ("127.8.9.10", 40000)])
def test_without_a_token_metrics_answer_a_local_client(client: TestClient, peer: tuple[str, int]) -> None:
    response = TestClient(client.app, client=peer).get("/metrics")

    assert response.status_code == 200
    assert "chatbox_http_requests" in response.text


def test_with_a_token_metrics_take_the_bearer_from_anywhere_and_nothing_else(guarded_client: TestClient) -> None:
    remote = TestClient(guarded_client.app, client=("203.0.113.7", 40000))
    local = TestClient(guarded_client.app, client=("127.0.0.1", 40000))

    granted = remote.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    missing = remote.get("/metrics")
    wrong = remote.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    local_without = local.get("/metrics")

    assert granted.status_code == 200 and "chatbox_http_requests" in granted.text
    for refused in (missing, wrong, local_without):
        assert_error(refused, 401, "unauthorized")
        assert refused.headers["www-authenticate"] == "Bearer"
        assert METRICS_TOKEN not in refused.text
