"""The `chatbox` command against both database backends: its commands in-process (`invoke_chatbox`), the entry
point and what only a process shows (logging quieted, an unreachable database) as a real subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select

from chatbox.domain.addresses import AddressPolicy
from chatbox.domain.ids import new_id, token_matches
from chatbox.domain.normalized import InboundMessage
from chatbox.domain.schemas import ConnectionCreate, CredentialCreate, CredentialKind, MailboxCreate
from chatbox.domain.settings import Settings
from chatbox.domain.vault import Vault, decode_key, generate_key, key_id_of
from chatbox.runtime import Runtime
from chatbox.services import connections, credentials, mailboxes
from chatbox.services.inbound import accept_inbound
from chatbox.store.database import Database
from chatbox.store.models import Base, Credential, Delivery, Mailbox
from tests.conftest import AccountKey
from tests.support.api import SIGNING_SECRET
from tests.support.cli import clean_env, invoke_chatbox, run_chatbox

CHOSEN_KEY = "cbk_chosen-by-the-operator-0123456789abcdef"


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """The CLI pointed at the same database and vault key as the `runtime` fixture."""
    return clean_env(
        home=str(settings.home), db_url=settings.db_url, vault_key=settings.vault_key, public_url=settings.public_url
    )


def chatbox(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return invoke_chatbox(*args, env=env, cwd=cwd)


def assert_clean_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: "), result.stderr


def _mailbox(runtime: Runtime, account: AccountKey, name: str = "agent") -> tuple[str, str]:
    with runtime.db.session() as db:
        created = mailboxes.create_mailbox(db, account.account_id, MailboxCreate(name=name), policy=AddressPolicy())
    return created.mailbox.id, created.mcp_token


def _connection(runtime: Runtime, account: AccountKey, mailbox_id: str, platform: str) -> str:
    secrets = {"bot_token": "123:abc"} | ({"signing_secret": "s1gn"} if platform == "slack" else {})
    data = ConnectionCreate(platform=platform, secrets=secrets)
    with runtime.db.session() as db:
        created = connections.create_connection(
            db, runtime.vault, runtime.platforms, account.account_id, mailbox_id, data
        )
        return created.connection.id


def _rows(stdout: str) -> list[list[str]]:
    return [line.split("\t") for line in stdout.splitlines()]


# --- migrate -------------------------------------------------------------------------------


def test_migrate_builds_a_fresh_database_and_stays_quiet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = clean_env(home=str(tmp_path / "home"), db_url=url)  # migrating needs no vault key

    result = run_chatbox("migrate", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "database is up to date" in result.stdout
    assert "alembic" not in result.stderr  # alembic's INFO narration is quieted
    database = Database(url)
    assert set(Base.metadata.tables) <= set(inspect(database.engine).get_table_names())
    database.dispose()


def test_migrate_is_idempotent(cli_env: dict[str, str], tmp_path: Path) -> None:
    first = chatbox("migrate", env=cli_env, cwd=tmp_path)
    second = chatbox("migrate", env=cli_env, cwd=tmp_path)

    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert "INFO" not in first.stderr + second.stderr


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    env = clean_env(db_url="postgresql://nobody@127.0.0.1:9/chatbox", vault_key=generate_key())

    result = run_chatbox("migrate", env=env, cwd=tmp_path)

    assert_clean_failure(result, "database unavailable")


@pytest.mark.parametrize(("variable", "value"), [("CHATBOX_API_PORT", "eighty"), ("CHATBOX_LOG_LEVEL", "loud")])
def test_invalid_setting_is_a_clear_error(tmp_path: Path, variable: str, value: str) -> None:
    env = clean_env(db_url=f"sqlite:///{tmp_path / 'x.db'}", vault_key=generate_key())

    result = chatbox("migrate", env={**env, variable: value}, cwd=tmp_path)

    assert result.returncode == 2
    assert_clean_failure(result, f"invalid configuration: {variable}")


# --- bootstrap -----------------------------------------------------------------------------


def test_bootstrap_json_prints_a_key_that_works_on_the_api(
    cli_env: dict[str, str], tmp_path: Path, client: TestClient
) -> None:
    result = chatbox("bootstrap", "--json", env=cli_env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert set(printed) == {"account_id", "api_key"}
    assert printed["account_id"].startswith("acct_")
    assert printed["api_key"].startswith("cbk_")
    response = client.get("/v1/mailboxes", headers={"Authorization": f"Bearer {printed['api_key']}"})
    assert response.status_code == 200, response.text


def test_bootstrap_prints_the_key_once_in_plain_text(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = chatbox("bootstrap", env=cli_env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    key_lines = [line for line in result.stdout.splitlines() if line.startswith("API key")]
    assert len(key_lines) == 1
    assert key_lines[0].rsplit(" ", 1)[1].startswith("cbk_")


def test_second_bootstrap_refuses_with_a_clear_message(cli_env: dict[str, str], tmp_path: Path) -> None:
    first = chatbox("bootstrap", "--json", env=cli_env, cwd=tmp_path)

    second = chatbox("bootstrap", "--json", env=cli_env, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert_clean_failure(second, "an account already exists")
    assert second.stdout == ""


def test_bootstrap_uses_the_chosen_api_key(cli_env: dict[str, str], tmp_path: Path, client: TestClient) -> None:
    env = {**cli_env, "CHATBOX_BOOTSTRAP_API_KEY": CHOSEN_KEY}

    result = chatbox("bootstrap", "--json", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["api_key"] == CHOSEN_KEY
    assert client.get("/v1/mailboxes", headers={"Authorization": f"Bearer {CHOSEN_KEY}"}).status_code == 200


def test_chosen_key_with_markup_characters_is_printed_verbatim(cli_env: dict[str, str], tmp_path: Path) -> None:
    chosen = "[bold]:smile:[/]-operator-picked-this-long-key-0123"
    env = {**cli_env, "CHATBOX_BOOTSTRAP_API_KEY": chosen}

    result = chatbox("bootstrap", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert f"API key (shown once, keep it safe): {chosen}" in result.stdout.splitlines()


def test_short_chosen_api_key_is_refused_and_nothing_is_created(
    cli_env: dict[str, str], tmp_path: Path, client: TestClient
) -> None:
    env = {**cli_env, "CHATBOX_BOOTSTRAP_API_KEY": "too-short"}

    refused = chatbox("bootstrap", env=env, cwd=tmp_path)
    retried = chatbox("bootstrap", "--json", env=cli_env, cwd=tmp_path)

    assert_clean_failure(refused, "at least 32 characters")
    assert "too-short" not in refused.stderr
    assert retried.returncode == 0, retried.stderr  # the refused run left no account behind


# --- operator ------------------------------------------------------------------------------


def test_mailbox_list_shows_every_account_in_full(
    cli_env: dict[str, str], tmp_path: Path, runtime: Runtime, account: AccountKey, other_account: AccountKey
) -> None:
    first, _ = _mailbox(runtime, account, "[/oops] :smile: support agent")
    second, _ = _mailbox(runtime, other_account, "sales")

    result = chatbox("operator", "mailbox-list", env=cli_env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    header, *rows = _rows(result.stdout)
    assert header == ["id", "account", "name", "status", "webhook_url", "last_delivery"]
    assert rows == [
        [first, account.account_id, "[/oops] :smile: support agent", "active", "-", "-"],
        [second, other_account.account_id, "sales", "active", "-", "-"],
    ]


def test_mailbox_list_hides_archived_unless_asked(
    cli_env: dict[str, str], tmp_path: Path, runtime: Runtime, account: AccountKey
) -> None:
    mailbox_id, _ = _mailbox(runtime, account)
    with runtime.db.session() as db:
        mailboxes.archive_mailbox(db, account.account_id, mailbox_id)

    default = chatbox("operator", "mailbox-list", env=cli_env, cwd=tmp_path)
    everything = chatbox("operator", "mailbox-list", "--include-archived", env=cli_env, cwd=tmp_path)

    assert mailbox_id not in default.stdout
    assert [mailbox_id, account.account_id, "agent", "archived", "-", "-"] in _rows(everything.stdout)


def test_connection_list_shows_the_mailboxs_connections(
    cli_env: dict[str, str], tmp_path: Path, runtime: Runtime, account: AccountKey
) -> None:
    mailbox_id, _ = _mailbox(runtime, account)
    telegram = _connection(runtime, account, mailbox_id, "telegram")
    slack = _connection(runtime, account, mailbox_id, "slack")

    result = chatbox("operator", "connection-list", mailbox_id, env=cli_env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    header, *rows = _rows(result.stdout)
    assert header == ["id", "platform", "status", "secrets", "created"]
    assert [row[:4] for row in rows] == [
        [telegram, "telegram", "active", "bot_token"],
        [slack, "slack", "active", "bot_token, signing_secret"],
    ]
    assert "123:abc" not in result.stdout


def test_connection_archive_frees_the_platform_slot(
    cli_env: dict[str, str], tmp_path: Path, runtime: Runtime, account: AccountKey
) -> None:
    mailbox_id, _ = _mailbox(runtime, account)
    connection_id = _connection(runtime, account, mailbox_id, "telegram")

    result = chatbox("operator", "connection-archive", connection_id, env=cli_env, cwd=tmp_path)
    again = chatbox("operator", "connection-archive", connection_id, env=cli_env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert f"connection {connection_id} archived" in result.stdout
    assert again.returncode == 0, again.stderr
    with runtime.db.session() as db:
        assert connections.get_connection(db, None, connection_id).status == "archived"
    assert _connection(runtime, account, mailbox_id, "telegram") != connection_id


def test_regenerating_the_mcp_token_replaces_the_old_one(
    cli_env: dict[str, str], tmp_path: Path, runtime: Runtime, account: AccountKey, settings: Settings
) -> None:
    mailbox_id, old_token = _mailbox(runtime, account)

    result = chatbox("operator", "mailbox-regenerate-mcp-token", mailbox_id, env=cli_env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    token_lines = [line for line in result.stdout.splitlines() if line.startswith("MCP token")]
    assert len(token_lines) == 1
    new_token = token_lines[0].rsplit(" ", 1)[1]
    assert new_token.startswith("mcp_")
    assert settings.mcp_url(mailbox_id) in result.stdout
    with runtime.db.session() as db:
        stored_hash = db.get_one(Mailbox, mailbox_id).mcp_token_hash
    assert token_matches(new_token, stored_hash)
    assert not token_matches(old_token, stored_hash)


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        ("connection-list", "mailbox"),
        ("connection-archive", "connection"),
        ("mailbox-regenerate-mcp-token", "mailbox"),
        ("mailbox-health", "mailbox"),
        ("mailbox-unpause", "mailbox"),
        ("tail-deliveries", "mailbox"),
        ("redrive", "mailbox"),
    ],
)
def test_unknown_ids_are_a_clear_error(cli_env: dict[str, str], tmp_path: Path, command: str, kind: str) -> None:
    unknown = new_id(kind)

    result = chatbox("operator", command, unknown, env=cli_env, cwd=tmp_path)

    assert result.returncode == 1
    assert_clean_failure(result, f"{kind} not found")


def test_a_malformed_id_with_markup_is_a_clean_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = chatbox("operator", "connection-list", "mbx_[/x]", env=cli_env, cwd=tmp_path)

    assert_clean_failure(result, "mailbox not found")


def test_missing_vault_key_is_a_clear_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {name: value for name, value in cli_env.items() if name != "CHATBOX_VAULT_KEY"}

    result = chatbox("operator", "connection-archive", new_id("connection"), env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert_clean_failure(result, "no vault key")


# --- vault ---------------------------------------------------------------------------------


def test_generate_key_prints_a_usable_vault_key(tmp_path: Path) -> None:
    result = chatbox("vault", "generate-key", env=clean_env(), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert len(decode_key(key)) == 32
    assert key != chatbox("vault", "generate-key", env=clean_env(), cwd=tmp_path).stdout.strip()


def test_vault_rotate_reseals_credentials_under_the_new_key(
    cli_env: dict[str, str], tmp_path: Path, runtime: Runtime, account: AccountKey, settings: Settings
) -> None:
    old_key, new_key = settings.vault_key, generate_key()
    with runtime.db.session() as db:
        credential_id = credentials.create_credential(
            db,
            runtime.vault,
            account.account_id,
            CredentialCreate(name="hmac", kind=CredentialKind.hmac_signing, value=SIGNING_SECRET),
        ).id
    env = {**cli_env, "CHATBOX_VAULT_KEY": new_key, "CHATBOX_VAULT_OLD_KEYS": old_key}

    result = chatbox("vault", "rotate", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    new_key_id = key_id_of(decode_key(new_key))
    assert f"re-encrypted 1 credential(s) under key {new_key_id}" in result.stdout
    with runtime.db.session() as db:
        stored = db.get_one(Credential, credential_id)
        assert db.scalars(select(Credential.key_id)).all() == [new_key_id]
    assert credentials.reveal(Vault(new_key), stored) == SIGNING_SECRET
    assert stored.kind == CredentialKind.hmac_signing


def test_vault_rotate_without_the_old_key_fails_clearly(
    cli_env: dict[str, str], tmp_path: Path, runtime: Runtime, account: AccountKey
) -> None:
    with runtime.db.session() as db:
        credential_id = credentials.create_credential(
            db,
            runtime.vault,
            account.account_id,
            CredentialCreate(name="hmac", kind=CredentialKind.hmac_signing, value=SIGNING_SECRET),
        ).id

    result = chatbox("vault", "rotate", env={**cli_env, "CHATBOX_VAULT_KEY": generate_key()}, cwd=tmp_path)

    assert_clean_failure(result, f"credential {credential_id} was sealed with key")


# --- delivery operations --------------------------------------------------------------------------


def _dead_and_held(runtime: Runtime, account: AccountKey) -> str:
    """A paused mailbox with one dead and one held delivery, as the pipeline would leave them."""
    mailbox_id, _ = _mailbox(runtime, account)
    connection_id = _connection(runtime, account, mailbox_id, "signal")
    with runtime.db.session() as db:
        for n, status in enumerate(("dead", "held")):
            inbound = InboundMessage(external_chat_id="c", external_message_id=f"m-{n}", text=f"t{n}")
            accept_inbound(db, runtime.queue, connection_id, inbound)
            delivery = db.scalars(select(Delivery).order_by(Delivery.id.desc())).first()
            assert delivery is not None
            delivery.status, delivery.attempts, delivery.last_error = status, 8, "HTTP 500"
        mailbox = db.get(Mailbox, mailbox_id)
        assert mailbox is not None
        mailbox.status, mailbox.consecutive_failures, mailbox.last_error = "paused", 20, "HTTP 500"
        db.commit()
    return mailbox_id


def test_operator_sees_health_then_unpauses_and_redrives(
    cli_env: dict[str, str], tmp_path: Path, runtime: Runtime, account: AccountKey
) -> None:
    mailbox_id = _dead_and_held(runtime, account)

    health = chatbox("operator", "mailbox-health", mailbox_id, env=cli_env, cwd=tmp_path)
    tail = chatbox("operator", "tail-deliveries", mailbox_id, env=cli_env, cwd=tmp_path)
    unpaused = chatbox("operator", "mailbox-unpause", mailbox_id, env=cli_env, cwd=tmp_path)
    redriven = chatbox("operator", "redrive", mailbox_id, env=cli_env, cwd=tmp_path)

    assert health.returncode == 0, health.stderr
    assert "status: paused" in health.stdout and "dead_letters: 1" in health.stdout
    assert "consecutive_failures: 20" in health.stdout and "last_error: HTTP 500" in health.stdout
    rows = _rows(tail.stdout)
    assert rows[0] == ["id", "status", "attempts", "updated", "next_retry", "last_error"]
    assert [row[1] for row in rows[1:]] == ["dead", "held"]
    assert unpaused.returncode == 0 and redriven.returncode == 0, unpaused.stderr + redriven.stderr
    assert "requeued 1 dead deliveries" in redriven.stdout
    with runtime.db.session() as db:
        mailbox = db.get(Mailbox, mailbox_id)
        assert mailbox is not None and mailbox.status == "active" and mailbox.consecutive_failures == 0
        assert sorted(d.status for d in db.scalars(select(Delivery))) == ["pending", "pending"]
