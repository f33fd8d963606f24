"""The operator CLI (`doctor`, `status`, `keys`, `account`, home discovery, tables) against both database backends
and the platform stand-ins: its commands in-process (`invoke_chatbox`); a real subprocess where only a process
shows it (a terminal's width, `--follow` until terminated, the entry point finding no home)."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.domain.addresses import AddressPolicy
from chatbox.domain.normalized import InboundMessage
from chatbox.domain.schemas import ConnectionCreate, MailboxCreate
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.services import accounts, connections, mailboxes
from chatbox.services.inbound import accept_inbound
from chatbox.store.models import Delivery, Mailbox
from tests.conftest import AccountKey
from tests.support.cli import CHATBOX, clean_env, invoke_chatbox, run_chatbox, wait_for
from tests.support.platforms import SlackWebApi, TelegramBotApi, running_slack, running_telegram
from tests.support.signal_cli import running_signal_cli
from tests.support.signal_program import ACCOUNT as SIGNAL_ACCOUNT
from tests.support.signal_program import running_program

TELEGRAM_TOKEN = "123456:telegram-test-token"
SLACK_TOKEN = "xoxb-slack-test-token"
TELEGRAM_BOT = {"id": 123456, "is_bot": True, "first_name": "Chatbox", "username": "chatbox_test_bot"}
HOOK = "http://127.0.0.1:9/hook"  # never contacted: the doctor checks the address, it sends nothing
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """The CLI pointed at the same database and vault key as the `runtime` fixture."""
    return clean_env(
        home=str(settings.home),
        db_url=settings.db_url,
        vault_key=settings.vault_key,
        public_url=settings.public_url,
        allow_loopback_webhooks="true",
    )


def _mailbox(runtime: Runtime, account: AccountKey, webhook_url: str | None = HOOK) -> str:
    with runtime.db.session() as db:
        created = mailboxes.create_mailbox(
            db,
            account.account_id,
            MailboxCreate(name="agent", webhook_url=webhook_url),
            policy=AddressPolicy(allow_loopback=True),
        )
    return created.mailbox.id


def _connection(runtime: Runtime, account: AccountKey, mailbox_id: str, platform: str, secrets: dict[str, str]) -> str:
    with runtime.db.session() as db:
        created = connections.create_connection(
            db,
            runtime.vault,
            runtime.platforms,
            account.account_id,
            mailbox_id,
            ConnectionCreate(platform=platform, secrets=secrets),
        )
    return created.connection.id


def _doctor(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return invoke_chatbox("doctor", *args, env=env, cwd=cwd)


def _lines_with(status: str, output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{status} ")]


# --- doctor ------------------------------------------------------------------------------


@pytest.fixture
def platform_env(cli_env: dict[str, str]) -> Iterator[tuple[dict[str, str], TelegramBotApi, SlackWebApi]]:
    """The CLI's environment with Telegram and Slack pointed at running stand-ins."""
    with running_telegram({TELEGRAM_TOKEN: TELEGRAM_BOT}) as telegram, running_slack(SLACK_TOKEN) as slack:
        env = {
            **cli_env,
            "CHATBOX_TELEGRAM_API_URL": telegram.root,
            "CHATBOX_SLACK_API_URL": slack.root + "/api/",
        }
        yield env, telegram, slack


def _deployment(
    runtime: Runtime, account: AccountKey, settings: Settings, telegram: TelegramBotApi
) -> tuple[str, str, str]:
    """A mailbox with a Telegram and a Slack connection, the Telegram webhook registered where chatbox expects it."""
    mailbox_id = _mailbox(runtime, account)
    telegram_id = _connection(runtime, account, mailbox_id, "telegram", {"bot_token": TELEGRAM_TOKEN})
    slack_id = _connection(runtime, account, mailbox_id, "slack", {"bot_token": SLACK_TOKEN, "signing_secret": "s1gn"})
    expected = f"{settings.public_url}/v1/ingest/telegram/{telegram_id}"
    telegram.webhooks[TELEGRAM_TOKEN] = {"url": expected}
    return mailbox_id, telegram_id, slack_id


def test_doctor_passes_on_a_healthy_deployment(
    platform_env: tuple[dict[str, str], TelegramBotApi, SlackWebApi],
    runtime: Runtime,
    account: AccountKey,
    settings: Settings,
    tmp_path: Path,
) -> None:
    env, telegram, _ = platform_env
    mailbox_id, telegram_id, slack_id = _deployment(runtime, account, settings, telegram)

    result = _doctor(env, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert _lines_with("fail", result.stdout) == []
    for expected in (
        "ok   database",
        "ok   migrations: at head",
        "ok   queue",
        "ok   vault: the key opens all",
        f"ok   connection {telegram_id} (telegram): telegram token: getMe answers @chatbox_test_bot",
        f"ok   connection {telegram_id} (telegram): telegram webhook",
        f"ok   connection {slack_id} (slack): slack bot token",
        f"ok   mailbox {mailbox_id}: webhook URL allowed",
    ):
        assert any(line.startswith(expected) for line in result.stdout.splitlines()), (expected, result.stdout)
    assert TELEGRAM_TOKEN not in result.stdout + result.stderr


def test_doctor_json_lists_every_check(
    platform_env: tuple[dict[str, str], TelegramBotApi, SlackWebApi],
    runtime: Runtime,
    account: AccountKey,
    settings: Settings,
    tmp_path: Path,
) -> None:
    env, telegram, _ = platform_env
    _deployment(runtime, account, settings, telegram)

    result = _doctor(env, tmp_path, "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert {tuple(sorted(check)) for check in report["checks"]} == {("detail", "fix", "status", "what")}
    assert {check["status"] for check in report["checks"]} <= {"ok", "warn"}
    assert [check["what"] for check in report["checks"][:4]] == ["settings", "database", "migrations", "queue"]


def test_doctor_names_a_webhook_registered_elsewhere_and_the_fix(
    platform_env: tuple[dict[str, str], TelegramBotApi, SlackWebApi],
    runtime: Runtime,
    account: AccountKey,
    settings: Settings,
    tmp_path: Path,
) -> None:
    env, telegram, _ = platform_env
    _, telegram_id, _ = _deployment(runtime, account, settings, telegram)
    telegram.webhooks[TELEGRAM_TOKEN] = {"url": "https://old-host.example.test/hook"}

    result = _doctor(env, tmp_path)

    assert result.returncode == 1
    [failure] = _lines_with("fail", result.stdout)
    assert "webhook is https://old-host.example.test/hook" in failure
    assert f"run `chatbox operator connection-resync {telegram_id}`" in failure


def test_doctor_names_a_refused_token_and_the_fix(
    platform_env: tuple[dict[str, str], TelegramBotApi, SlackWebApi],
    runtime: Runtime,
    account: AccountKey,
    settings: Settings,
    tmp_path: Path,
) -> None:
    env, telegram, _ = platform_env
    _deployment(runtime, account, settings, telegram)
    mailbox_id = _mailbox(runtime, account)
    refused = _connection(runtime, account, mailbox_id, "slack", {"bot_token": "xoxb-revoked", "signing_secret": "s"})

    result = _doctor(env, tmp_path)

    assert result.returncode == 1
    [failure] = _lines_with("fail", result.stdout)
    assert failure.startswith(f"fail connection {refused} (slack): slack bot token: Slack refused auth.test")
    assert "PATCH the connection's secrets.bot_token" in failure
    assert "xoxb-revoked" not in result.stdout


def test_doctor_with_the_wrong_vault_key_names_each_unreadable_credential(
    cli_env: dict[str, str], runtime: Runtime, account: AccountKey, tmp_path: Path
) -> None:
    mailbox_id = _mailbox(runtime, account)
    _connection(runtime, account, mailbox_id, "telegram", {"bot_token": TELEGRAM_TOKEN})

    result = _doctor({**cli_env, "CHATBOX_VAULT_KEY": generate_key()}, tmp_path)

    assert result.returncode == 1
    failures = _lines_with("fail", result.stdout)
    assert any(line.startswith("fail credential ") and "CHATBOX_VAULT_KEY" in line for line in failures)
    assert "Traceback" not in result.stderr


def test_doctor_with_an_unreachable_database_fails_and_stops_there(tmp_path: Path) -> None:
    env = clean_env(db_url="postgresql+psycopg://nobody@127.0.0.1:9/chatbox", vault_key=generate_key())

    result = _doctor(env, tmp_path)

    assert result.returncode == 1
    assert _lines_with("fail", result.stdout)[0].startswith("fail database: unreachable")
    assert "check CHATBOX_DB_URL" in result.stdout
    assert "migrations" not in result.stdout
    assert "Traceback" not in result.stderr


def test_doctor_refuses_a_webhook_url_the_policy_no_longer_allows(
    cli_env: dict[str, str], runtime: Runtime, account: AccountKey, tmp_path: Path
) -> None:
    mailbox_id = _mailbox(runtime, account)
    env = {**cli_env, "CHATBOX_ALLOW_LOOPBACK_WEBHOOKS": "false"}

    result = _doctor(env, tmp_path)

    assert result.returncode == 1
    [failure] = _lines_with("fail", result.stdout)
    assert failure.startswith(f"fail mailbox {mailbox_id}:")
    assert "CHATBOX_ALLOW_PRIVATE_WEBHOOKS" in failure


def test_doctor_fails_on_a_container_connector_that_does_not_answer(
    cli_env: dict[str, str], runtime: Runtime, account: AccountKey, tmp_path: Path
) -> None:
    connection_id = _signal_connection(runtime, account, "http://127.0.0.1:9/v1/send")
    env = {**cli_env, "CHATBOX_CONNECTOR_ALLOWED_HOSTS": "127.0.0.1"}

    result = _doctor(env, tmp_path)

    assert result.returncode == 1
    [failure] = _lines_with("fail", result.stdout)
    assert failure.startswith(f"fail connection {connection_id} (signal): signal connector:")
    assert "http://127.0.0.1:9/healthz cannot be reached" in failure


def _signal_connection(runtime: Runtime, account: AccountKey, outbound_url: str) -> str:
    mailbox_id = _mailbox(runtime, account)
    with runtime.db.session() as db:
        created = connections.create_connection(
            db,
            runtime.vault,
            runtime.platforms,
            account.account_id,
            mailbox_id,
            ConnectionCreate(platform="signal", config={"outbound_url": outbound_url}),
            policy=AddressPolicy(allow_loopback=True),
        )
    return created.connection.id


@pytest.mark.parametrize("signal_cli_up", [True, False], ids=["healthy", "signal-cli-down"])
def test_doctor_asks_the_real_signal_program_for_its_health(
    cli_env: dict[str, str], runtime: Runtime, account: AccountKey, tmp_path: Path, signal_cli_up: bool
) -> None:
    env = {**cli_env, "CHATBOX_CONNECTOR_ALLOWED_HOSTS": "127.0.0.1"}
    with running_signal_cli(SIGNAL_ACCOUNT) as signal_cli:
        signal_cli_url = signal_cli.url if signal_cli_up else "http://127.0.0.1:9"
        with running_program(tmp_path, SIGNAL_CLI_URL=signal_cli_url) as program:
            connection_id = _signal_connection(runtime, account, f"{program.url}/v1/send")

            result = _doctor(env, tmp_path)

    line = next(line for line in result.stdout.splitlines() if f"connection {connection_id}" in line)
    if signal_cli_up:
        assert result.returncode == 0, result.stdout
        assert line.startswith(f"ok   connection {connection_id} (signal): signal connector: {program.url}/healthz")
    else:
        assert result.returncode == 1
        assert line.startswith(f"fail connection {connection_id} (signal): signal connector: {program.url}/healthz")
        assert "answers 503" in line and "read the connector program's log" in line


# --- home discovery ----------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder whose `.chatbox` holds a migrated database and a vault key, as `chatbox dev` leaves it."""
    home = tmp_path / "project" / ".chatbox"
    home.mkdir(parents=True)
    (home / "vault.key").write_text(generate_key() + "\n")
    migrated = invoke_chatbox("migrate", env=clean_env(home=str(home)), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    return home.parent


def test_commands_find_the_home_from_a_subdirectory(project: Path) -> None:
    deeper = project / "src" / "agent"
    deeper.mkdir(parents=True)

    created = invoke_chatbox("account", "create", "acme", "--json", env=clean_env(), cwd=deeper)
    listed = invoke_chatbox("account", "list", env=clean_env(), cwd=project)

    assert created.returncode == 0, created.stderr
    account_id = json.loads(created.stdout)["account_id"]
    assert [account_id, "acme"] == listed.stdout.splitlines()[1].split("\t")[:2]


def test_chatbox_home_wins_over_the_working_directory(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    result = invoke_chatbox("status", env=clean_env(home=str(project / ".chatbox")), cwd=elsewhere)

    assert result.returncode == 0, result.stderr
    assert "accounts:      0" in result.stdout


def test_without_a_home_the_error_names_where_it_looked(tmp_path: Path) -> None:
    if any((folder / ".chatbox").exists() for folder in tmp_path.parents):
        pytest.skip("a .chatbox folder above the test's temporary folder would be found")
    nowhere = tmp_path / "a" / "b"
    nowhere.mkdir(parents=True)

    result = run_chatbox("status", env=clean_env(), cwd=nowhere)

    assert result.returncode == 2
    assert result.stderr.startswith("error: no chatbox home")
    for looked in (nowhere, nowhere.parent, tmp_path):
        assert str(looked / ".chatbox") in result.stderr
    assert "CHATBOX_HOME" in result.stderr


def test_listings_need_no_vault_key(
    cli_env: dict[str, str], runtime: Runtime, account: AccountKey, tmp_path: Path
) -> None:
    mailbox_id = _mailbox(runtime, account)
    env = {name: value for name, value in cli_env.items() if name != "CHATBOX_VAULT_KEY"}

    listed = invoke_chatbox("operator", "mailbox-list", env=env, cwd=tmp_path)
    status = invoke_chatbox("status", env=env, cwd=tmp_path)
    needs_key = invoke_chatbox("vault", "rotate", env=env, cwd=tmp_path)

    assert listed.returncode == 0, listed.stderr
    assert mailbox_id in listed.stdout
    assert status.returncode == 0, status.stderr
    assert needs_key.returncode == 2 and "no vault key" in needs_key.stderr


def test_a_database_never_migrated_says_to_migrate(tmp_path: Path) -> None:
    env = clean_env(db_url=f"sqlite:///{tmp_path / 'empty.db'}")

    result = invoke_chatbox("status", env=env, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.startswith("error: the database has no chatbox schema yet")
    assert "run `chatbox migrate`" in result.stderr


# --- tables on an 80-column terminal -----------------------------------------------------


def _terminal(env: dict[str, str]) -> dict[str, str]:
    """As if printed to an 80-column terminal (rich honours FORCE_COLOR; NO_COLOR keeps the text plain)."""
    return {**env, "COLUMNS": "80", "FORCE_COLOR": "1", "NO_COLOR": "1"}


@pytest.mark.parametrize(
    ("command", "headers"),
    [
        (("operator", "mailbox-list"), ["id", "account", "name", "status", "webhook_url", "last_delivery"]),
        (("account", "list"), ["id", "name", "created"]),
        (("keys", "list"), ["id", "name", "prefix", "created", "last_used"]),
    ],
    ids=["mailboxes", "accounts", "keys"],
)
def test_tables_fit_80_columns_and_keep_ids_and_headers_whole(
    cli_env: dict[str, str],
    runtime: Runtime,
    account: AccountKey,
    tmp_path: Path,
    command: tuple[str, ...],
    headers: list[str],
) -> None:
    mailbox_id = _mailbox(runtime, account, webhook_url="http://127.0.0.1:9/a/rather/long/path/to/the/agents/hook")
    with runtime.db.session() as db:
        key_id = accounts.issue_api_key(db, account.account_id, "continuous integration runner").key_id
    args = (*command, "--account", account.account_id) if command[0] == "keys" else command

    result = run_chatbox(*args, env=_terminal(cli_env), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = ANSI.sub("", result.stdout).splitlines()
    assert lines and max(len(line) for line in lines) <= 80, result.stdout
    whole_id = {"operator": mailbox_id, "account": account.account_id, "keys": key_id}[command[0]]
    assert any(whole_id in line for line in lines), result.stdout  # on one line, to be copied
    header_line = next((line for line in lines if line.startswith("┃")), None)
    if header_line is not None:  # a table: every column at least as wide as its header's first word
        cells = [cell.strip() for cell in header_line.strip("┃").split("┃")]
        assert cells == [header.split()[0] for header in headers], result.stdout
    else:  # blocks of `header: value` lines
        assert all(any(line.startswith(f"{header}:") for line in lines) for header in headers), result.stdout


# --- keys and accounts --------------------------------------------------------------------


def test_account_create_prints_a_working_key_and_list_shows_it(
    cli_env: dict[str, str], tmp_path: Path, client: TestClient
) -> None:
    created = invoke_chatbox("account", "create", "Acme Corp", env=cli_env, cwd=tmp_path)
    listed = invoke_chatbox("account", "list", env=cli_env, cwd=tmp_path)

    assert created.returncode == 0, created.stderr
    account_id = created.stdout.splitlines()[0].removeprefix("Created account ").rstrip(".")
    key = created.stdout.splitlines()[1].rsplit(" ", 1)[1]
    assert client.get("/v1/mailboxes", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert [account_id, "Acme Corp"] in [row.split("\t")[:2] for row in listed.stdout.splitlines()]


def test_keys_create_list_revoke(
    cli_env: dict[str, str], tmp_path: Path, account: AccountKey, client: TestClient
) -> None:
    created = invoke_chatbox(
        "keys", "create", "--account", account.account_id, "--name", "ci", "--json", env=cli_env, cwd=tmp_path
    )
    issued = json.loads(created.stdout)
    listed = invoke_chatbox("keys", "list", "--account", account.account_id, env=cli_env, cwd=tmp_path)
    auth = {"Authorization": f"Bearer {issued['key']}"}
    before = client.get("/v1/mailboxes", headers=auth).status_code
    revoked = invoke_chatbox("keys", "revoke", issued["id"], env=cli_env, cwd=tmp_path)

    assert created.returncode == 0, created.stderr
    assert issued["account_id"] == account.account_id
    header, *rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert header == ["id", "name", "prefix", "created", "last_used"]
    assert [issued["id"], "ci", issued["key"][:12]] in [row[:3] for row in rows]
    assert issued["key"] not in listed.stdout
    assert before == 200
    assert revoked.returncode == 0, revoked.stderr
    assert client.get("/v1/mailboxes", headers=auth).status_code == 401


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "create", "--account", "acct_unknown"),
        ("keys", "list", "--account", "acct_unknown"),
        ("keys", "revoke", "key_unknown"),
    ],
    ids=["create", "list", "revoke"],
)
def test_keys_of_unknown_ids_are_a_clear_error(cli_env: dict[str, str], tmp_path: Path, args: tuple[str, ...]) -> None:
    result = invoke_chatbox(*args, env=cli_env, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "not found" in result.stderr
    assert "Traceback" not in result.stderr


# --- status and deliveries ----------------------------------------------------------------


def _paused_with_dead_letter(runtime: Runtime, account: AccountKey) -> str:
    mailbox_id = _mailbox(runtime, account)
    connection_id = _connection(runtime, account, mailbox_id, "signal", {})
    with runtime.db.session() as db:
        for n, status in enumerate(("dead", "pending")):
            accept_inbound(
                db,
                runtime.queue,
                connection_id,
                InboundMessage(external_chat_id="c", external_message_id=f"m{n}", text="t"),
            )
            delivery = db.scalars(select(Delivery).order_by(Delivery.id.desc())).first()
            assert delivery is not None
            delivery.status = status
        mailbox = db.get_one(Mailbox, mailbox_id)
        mailbox.status = "paused"
        db.commit()
    return mailbox_id


def test_status_counts_queue_dead_letters_and_paused(
    cli_env: dict[str, str], runtime: Runtime, account: AccountKey, tmp_path: Path
) -> None:
    mailbox_id = _paused_with_dead_letter(runtime, account)

    text = invoke_chatbox("status", env=cli_env, cwd=tmp_path)
    as_json = invoke_chatbox("status", "--json", env=cli_env, cwd=tmp_path)

    assert text.returncode == 0, text.stderr
    assert f"paused:        {mailbox_id}" in text.stdout
    report = json.loads(as_json.stdout)
    assert report["mailboxes"]["paused"] == 1
    assert report["connections"] == {"signal": 1}
    assert (report["queue_depth"], report["dead_letters"]) == (1, 1)


def test_tail_deliveries_follow_prints_new_deliveries_as_they_come(
    cli_env: dict[str, str], runtime: Runtime, account: AccountKey, tmp_path: Path
) -> None:
    mailbox_id = _mailbox(runtime, account)
    connection_id = _connection(runtime, account, mailbox_id, "signal", {})
    command = [str(CHATBOX), "operator", "tail-deliveries", mailbox_id, "--follow"]
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        command, env=cli_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        stdout = process.stdout
        assert stdout is not None
        reader = threading.Thread(target=_read_lines, args=(stdout, lines), daemon=True)
        reader.start()
        try:
            header = lines.get(timeout=30)
            with runtime.db.session() as db:
                inbound = InboundMessage(external_chat_id="c", external_message_id="m", text="t")
                accept_inbound(db, runtime.queue, connection_id, inbound)
                delivery_id = db.scalars(select(Delivery.id)).one()

            row = wait_for(lambda: _next_line(lines), timeout=30, what="the new delivery's line")
        finally:
            process.terminate()
            process.wait(timeout=10)
            reader.join(timeout=10)

    assert header.rstrip("\n").split("\t") == ["id", "status", "attempts", "updated", "next_retry", "last_error"]
    assert row.split("\t")[:2] == [delivery_id, "pending"]


def _read_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _next_line(lines: queue.Queue[str]) -> str | None:
    try:
        return lines.get(timeout=0.5).rstrip("\n")
    except queue.Empty:
        return None
