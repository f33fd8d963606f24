"""Account quotas: CHATBOX_MAX_MAILBOXES_PER_ACCOUNT and CHATBOX_MAX_CREDENTIALS_PER_ACCOUNT answer 409
`quota_exceeded` naming the setting, and archiving or deleting makes room (both backends)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.store.models import Connection, Credential
from tests.conftest import AccountKey
from tests.support.api import PLATFORM_SECRETS, assert_error, create_credential, create_mailbox

MAX_MAILBOXES = 2
MAX_CREDENTIALS = 3


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        max_mailboxes_per_account=MAX_MAILBOXES,
        max_credentials_per_account=MAX_CREDENTIALS,
    )


def credential_count(runtime: Runtime, account: AccountKey) -> int:
    with runtime.db.session() as db:
        return (
            db.scalar(select(func.count()).select_from(Credential).where(Credential.account_id == account.account_id))
            or 0
        )


def test_one_mailbox_over_the_quota_is_409_naming_the_setting_and_archiving_one_makes_room(
    client: TestClient, account: AccountKey
) -> None:
    kept = [create_mailbox(client, account, name=f"agent-{n}") for n in range(MAX_MAILBOXES)]

    refused = client.post("/v1/mailboxes", json={"name": "one-too-many"}, headers=account.headers)
    client.delete(f"/v1/mailboxes/{kept[0]['id']}", headers=account.headers)
    after_archive = client.post("/v1/mailboxes", json={"name": "replacement"}, headers=account.headers)

    body = assert_error(refused, 409, "quota_exceeded")
    assert "CHATBOX_MAX_MAILBOXES_PER_ACCOUNT=2" in body["message"]
    assert after_archive.status_code == 201


def test_the_mailbox_quota_is_per_account(client: TestClient, account: AccountKey, other_account: AccountKey) -> None:
    for n in range(MAX_MAILBOXES):
        create_mailbox(client, account, name=f"agent-{n}")

    assert client.post("/v1/mailboxes", json={"name": "theirs"}, headers=other_account.headers).status_code == 201


def test_one_credential_over_the_quota_is_409_naming_the_setting_and_deleting_one_makes_room(
    client: TestClient, runtime: Runtime, account: AccountKey
) -> None:
    kept = [create_credential(client, account, name=f"secret-{n}") for n in range(MAX_CREDENTIALS)]
    body = {"name": "one-too-many", "kind": "webhook_auth", "value": "s3cret-value-0002"}

    refused = client.post("/v1/credentials", json=body, headers=account.headers)
    client.delete(f"/v1/credentials/{kept[0]['id']}", headers=account.headers)
    after_delete = client.post("/v1/credentials", json=body, headers=account.headers)

    payload = assert_error(refused, 409, "quota_exceeded")
    assert "CHATBOX_MAX_CREDENTIALS_PER_ACCOUNT=3" in payload["message"]
    assert after_delete.status_code == 201
    assert credential_count(runtime, account) == MAX_CREDENTIALS


def test_a_connection_whose_secrets_do_not_fit_the_credential_quota_stores_nothing(
    client: TestClient, runtime: Runtime, account: AccountKey
) -> None:
    mailbox = create_mailbox(client, account)
    create_credential(client, account, name="signing")
    create_credential(client, account, name="other")
    secrets = PLATFORM_SECRETS["slack"]  # two secrets, one slot left

    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json={"platform": "slack", "secrets": secrets},
        headers=account.headers,
    )

    body = assert_error(response, 409, "quota_exceeded")
    assert "CHATBOX_MAX_CREDENTIALS_PER_ACCOUNT" in body["message"]
    assert credential_count(runtime, account) == 2
    with runtime.db.session() as db:
        assert db.scalars(select(Connection)).all() == []
