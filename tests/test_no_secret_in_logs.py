"""No secret in any log line: every kind of secret chatbox holds is created, every path that handles one is
exercised (REST, ingest, delivery with retries, MCP sends on every platform, the CLI in-process and as a
subprocess, refused tokens on every auth surface), with every logger at DEBUG, and every captured record,
formatted line and printed output is searched for each secret.

The runtime is composed as a process serving the built-in platforms would be, its Telegram and Slack
connectors on the stand-ins of tests/support/platforms.py, Signal on a stand-in container connector, and
the webhook receiver on 127.0.0.1 behind a URL with userinfo and a query token.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.types import ASGIApp
from typer.testing import CliRunner

from chatbox.asgi import create_app
from chatbox.cli.main import app as cli_app
from chatbox.compose import build_runtime
from chatbox.domain.redaction import install_log_redaction, uninstall_log_redaction
from chatbox.domain.settings import Settings, get_settings
from chatbox.domain.vault import generate_key
from chatbox.local.serve import uvicorn_log_config
from chatbox.runtime import Runtime
from chatbox.services import accounts
from chatbox.store.migrate import upgrade_to_head
from chatbox.store.models import Delivery
from connectors import builtin_platforms
from connectors.slack.spec import SlackSettings
from connectors.telegram.spec import TelegramSettings
from tests.support.api import assert_error
from tests.support.cli import clean_env, run_chatbox
from tests.support.mcp import mcp_client, run_async, running_connector, text_of
from tests.support.payloads import payload_bytes
from tests.support.pipeline import eventually, new_signing_secret, running_consumer
from tests.support.platforms import TELEGRAM_BOT, running_slack, running_telegram, slack_signature_headers
from tests.support.receiver import Reply, running_receiver

Json = dict[str, Any]
PUBLIC_URL = "https://chatbox.example.test"


def _random(prefix: str = "", size: int = 24) -> str:
    return prefix + secrets.token_urlsafe(size)


# Every secret of the run, by name. Random per run, so a hit can only be a leak.
TELEGRAM_TOKEN = "7012345678:AA" + secrets.token_urlsafe(25)[:33]
SLACK_TOKEN = f"xoxb-1111111111-2222222222222-{secrets.token_hex(12)}"
SLACK_SIGNING = secrets.token_hex(16)
BOOTSTRAP_KEY = _random("chosen-bootstrap-key-", 24)
WEBHOOK_AUTH = _random("Token ", 24)
MCP_PROXY_AUTH = _random("px-", 24)
PLATFORM_CREDENTIAL = _random("platform-kind-", 16)
HOOK_PASSWORD = _random("hookpw-", 12)
HOOK_QUERY_TOKEN = _random("hookq-", 12)
WRONG = {
    "wrong API key": _random("cbk_", 32),
    "wrong MCP token": _random("mcp_", 32),
    "wrong inbound token": _random("inb_", 32),
    "wrong Telegram secret token": _random("tgsecret-", 24),
    "refused Telegram bot token": "7012345679:AA" + secrets.token_urlsafe(25)[:33],
    "refused Slack bot token": f"xoxb-9999999999-8888888888888-{secrets.token_hex(12)}",
}


@dataclass
class Captured:
    """Every record any logger emitted, each formatted as a handler would, and every printed output."""

    records: list[logging.LogRecord] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    handler: logging.Handler | None = None

    def leaks(self, secrets_by_name: dict[str, str]) -> list[str]:
        """One line per (secret, where it was seen), with how many times: empty when nothing leaked."""
        seen: Counter[str] = Counter()
        for record in self.records:
            where = f"{record.levelname} {record.name} ({Path(record.pathname).name}:{record.lineno})"
            surfaces = {
                "getMessage()": _message(record),
                "args": repr(record.args),
                "exc_text": record.exc_text or "",
                "stack_info": record.stack_info or "",
                "extra": repr({k: v for k, v in record.__dict__.items() if k not in _STANDARD}),
            }
            for surface, text in surfaces.items():
                seen.update(f"{name} in {surface} of {where}" for name, s in secrets_by_name.items() if s in text)
        for line in self.lines:
            seen.update(f"{name} in a formatted log line" for name, s in secrets_by_name.items() if s in line)
        for origin, text in self.outputs.items():
            seen.update(f"{name} in {origin}" for name, s in secrets_by_name.items() if s in text)
        return [f"{leak} (x{count})" for leak, count in sorted(seen.items())]


_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception as exc:  # noqa: BLE001 - a record that cannot render is reported, not a crash here
        return f"<unrenderable: {exc!r}>"


class CaptureHandler(logging.Handler):
    """Keeps each record and its formatted line (with the exception text, as a stream handler prints it)."""

    def __init__(self, captured: Captured) -> None:
        super().__init__(level=1)  # uvicorn's TRACE (5) too
        self.captured = captured
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._lock_records:
            self.captured.records.append(record)
            self.captured.lines.append(line)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[Captured]:
    """Redaction installed as every composition root installs it, then every logger at DEBUG into one handler.

    Loggers that do not propagate (uvicorn's) get the handler too. Levels and handlers are restored after.
    """
    install_log_redaction()
    result = Captured()
    handler = result.handler = CaptureHandler(result)
    caplog.set_level(logging.DEBUG)
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    levels = {logger.name: logger.level for logger in loggers}
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield result
    finally:
        for name in ("", "uvicorn", "uvicorn.access"):
            logging.getLogger(name or None).removeHandler(handler)
        for logger in loggers:
            logger.setLevel(levels[logger.name])
        uninstall_log_redaction()


@contextmanager
def serving_like_chatbox_dev(app: ASGIApp, handler: logging.Handler) -> Iterator[str]:
    """The app on uvicorn with the log config `chatbox api` and `chatbox dev` give it (redacting), at uvicorn's
    most verbose level (`trace` prints each ASGI message); yields the base URL."""
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
    before = {name: _logger_state(logging.getLogger(name)) for name in names}
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="trace", log_config=uvicorn_log_config(), lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    for name in ("uvicorn", "uvicorn.access"):  # they do not propagate to the root logger
        logging.getLogger(name).addHandler(handler)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started or not thread.is_alive())
    assert thread.is_alive(), "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for name, state in before.items():  # uvicorn's handlers print to this test's captured streams
            _restore_logger(logging.getLogger(name), state)
        assert not thread.is_alive(), "uvicorn did not stop"


LoggerState = tuple[list[logging.Handler], int, bool]


def _logger_state(logger: logging.Logger) -> LoggerState:
    return list(logger.handlers), logger.level, logger.propagate


def _restore_logger(logger: logging.Logger, state: LoggerState) -> None:
    logger.handlers[:], logger.level, logger.propagate = state


def call_tool(url: str, token: str, name: str, arguments: Json) -> types.CallToolResult:
    async def go() -> types.CallToolResult:
        async with mcp_client(url, token) as session:
            return await session.call_tool(name, arguments)

    return run_async(go)


def created(response: httpx.Response | httpx2.Response) -> Json:
    assert response.status_code in (200, 201, 202), response.text
    body: Json = response.json()
    return body


def test_no_secret_reaches_any_log_line_on_any_path(
    db_url: str,
    tmp_path: Path,
    captured: Captured,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vault_key = generate_key()
    assert captured.handler is not None
    with (
        running_telegram({TELEGRAM_TOKEN: TELEGRAM_BOT}) as telegram,
        running_slack(SLACK_TOKEN) as slack,
        running_connector(MCP_PROXY_AUTH) as signal_connector,
        running_receiver() as receiver,
    ):
        settings = Settings(
            home=tmp_path / "home",
            db_url=db_url,
            vault_key=vault_key,
            public_url=PUBLIC_URL,
            bootstrap_api_key=BOOTSTRAP_KEY,
            allow_loopback_webhooks=True,
            delivery_retry_base_seconds=0.01,
            log_level="DEBUG",
        )
        platform_settings = {
            "telegram": TelegramSettings(api_url=telegram.root),
            "slack": SlackSettings(api_url=slack.root + "/api/"),
        }
        runtime: Runtime = build_runtime(settings, platforms=builtin_platforms(), platform_settings=platform_settings)
        host = receiver.url.removeprefix("http://").removesuffix("/hook")
        webhook_url = f"http://hookuser:{HOOK_PASSWORD}@{host}/hook?token={HOOK_QUERY_TOKEN}&v=1"
        receiver.script = [Reply(status=500), Reply(status=503), Reply(status=500)]  # retried, then delivered
        signing_secret = new_signing_secret()
        try:
            upgrade_to_head(runtime.db.engine)
            with runtime.db.session() as db:
                issued = accounts.bootstrap(db, api_key=runtime.settings.bootstrap_api_key)
                assert issued is not None and issued.secret == BOOTSTRAP_KEY
                generated_key = accounts.issue_api_key(db, issued.account_id, "ci").secret
            auth = {"Authorization": f"Bearer {generated_key}"}
            with TestClient(create_app(runtime)) as client:
                # --- credentials of every kind, mailboxes, connections on every platform ---------------
                def credential(kind: str, value: str) -> str:
                    body = {"name": f"{kind}-cred", "kind": kind, "value": value}
                    return str(created(client.post("/v1/credentials", json=body, headers=auth))["id"])

                signing_id = credential("hmac_signing", signing_secret)
                webhook_auth_id = credential("webhook_auth", WEBHOOK_AUTH)
                proxy_id = credential("mcp_proxy_auth", MCP_PROXY_AUTH)
                credential("platform", PLATFORM_CREDENTIAL)

                # A receiver URL with userinfo is refused (the address policy wants a credential reference),
                # and the refusal logs no password; the receiver URL used carries a query token, and Signal's
                # mailbox a webhook_auth credential too.
                userinfo_refused = client.post(
                    "/v1/mailboxes", json={"name": "userinfo", "webhook_url": webhook_url}, headers=auth
                )
                assert userinfo_refused.status_code == 422, userinfo_refused.text
                query_url = webhook_url.replace(f"hookuser:{HOOK_PASSWORD}@", "")

                def mailbox_fields(platform: str) -> Json:
                    fields: Json = {"name": platform, "webhook_url": query_url, "signing_credential_id": signing_id}
                    return fields | ({"webhook_auth_credential_id": webhook_auth_id} if platform == "signal" else {})

                mailboxes = {
                    platform: created(client.post("/v1/mailboxes", json=mailbox_fields(platform), headers=auth))
                    for platform in ("telegram", "slack", "signal")
                }

                def connect(platform: str, secrets_: dict[str, str], config: Json | None = None) -> httpx2.Response:
                    body = {"platform": platform, "secrets": secrets_, "config": config or {}}
                    return client.post(
                        f"/v1/mailboxes/{mailboxes[platform]['id']}/connections", json=body, headers=auth
                    )

                assert_error(connect("telegram", {"bot_token": WRONG["refused Telegram bot token"]}), 422)
                assert_error(
                    connect("slack", {"bot_token": WRONG["refused Slack bot token"], "signing_secret": SLACK_SIGNING}),
                    422,
                )
                tg = created(connect("telegram", {"bot_token": TELEGRAM_TOKEN}))
                sl = created(connect("slack", {"bot_token": SLACK_TOKEN, "signing_secret": SLACK_SIGNING}))
                sig = created(
                    connect("signal", {}, {"outbound_url": signal_connector.url, "outbound_credential_id": proxy_id})
                )
                telegram_secrets = [str(telegram.webhooks[TELEGRAM_TOKEN]["secret_token"])]

                # --- ingest on every platform, and refused tokens on every auth surface ----------------
                tg_headers = {"X-Telegram-Bot-Api-Secret-Token": telegram_secrets[0]}
                update = payload_bytes("telegram", "supergroup_reply")
                assert client.post(f"/v1/ingest/telegram/{tg['id']}", content=update, headers=tg_headers).is_success
                event = payload_bytes("slack", "thread_reply")
                slack_headers = slack_signature_headers(SLACK_SIGNING, event)
                assert client.post(f"/v1/ingest/slack/{sl['id']}", content=event, headers=slack_headers).is_success
                inbound = {"external_chat_id": "+15550123", "external_message_id": "m1", "text": "hello"}
                inbound_auth = {"Authorization": f"Bearer {sig['inbound_token']}"}
                created(client.post(f"/v1/connections/{sig['id']}/messages", json=inbound, headers=inbound_auth))

                wrong_tg = {"X-Telegram-Bot-Api-Secret-Token": WRONG["wrong Telegram secret token"]}
                assert_error(client.post(f"/v1/ingest/telegram/{tg['id']}", content=update, headers=wrong_tg), 403)
                unsigned = slack_signature_headers("not-" + SLACK_SIGNING, event)
                assert_error(client.post(f"/v1/ingest/slack/{sl['id']}", content=event, headers=unsigned), 403)
                wrong_inbound = {"Authorization": f"Bearer {WRONG['wrong inbound token']}"}
                assert_error(
                    client.post(f"/v1/connections/{sig['id']}/messages", json=inbound, headers=wrong_inbound), 401
                )
                wrong_key = {"Authorization": f"Bearer {WRONG['wrong API key']}"}
                assert_error(client.get("/v1/mailboxes", headers=wrong_key), 401)
                assert_error(client.get(f"/v1/mailboxes?token={WRONG['wrong API key']}"), 401)

                # --- delivery: the receiver fails three times, then takes them all --------------------
                with running_consumer(runtime):

                    def all_delivered() -> bool:
                        with runtime.db.session() as db:
                            found = list(db.scalars(select(Delivery)))
                        return len(found) == 3 and all(d.status == "delivered" for d in found)

                    eventually(all_delivered, timeout=20)
                assert len(receiver.requests) == 6
                assert {r.headers.get("authorization") for r in receiver.requests} == {WEBHOOK_AUTH, None}

                # --- MCP: a send on every platform, the admin server, refused tokens ------------------
                with serving_like_chatbox_dev(create_app(runtime), captured.handler) as base:
                    sends = {
                        "telegram": {"chat_id": "telegram:-1002233445566", "text": "shipping"},
                        "slack": {"chat_id": "slack:C0GENERAL", "text": "shipping"},
                        "signal": {"chat_id": "signal:+15550123", "text": "shipping"},
                    }
                    for platform, arguments in sends.items():
                        mailbox = mailboxes[platform]
                        result = call_tool(
                            f"{base}/mcp/{mailbox['id']}", mailbox["mcp_token"], "send_message", arguments
                        )
                        assert not result.is_error, text_of(result)
                    listed = call_tool(f"{base}/mcp/admin/{issued.account_id}", BOOTSTRAP_KEY, "list_mailboxes", {})
                    assert not listed.is_error, text_of(listed)
                    mcp_headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
                    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
                    for path, token in (
                        (f"/mcp/{mailboxes['signal']['id']}", WRONG["wrong MCP token"]),
                        (f"/mcp/admin/{issued.account_id}", WRONG["wrong API key"]),
                    ):
                        refused = httpx.post(
                            base + path, json=ping, headers={**mcp_headers, "authorization": f"Bearer {token}"}
                        )
                        assert refused.status_code == 401, refused.text
                    answered = httpx.get(f"{base}/v1/mailboxes?token={generated_key}", headers=auth)
                    assert answered.status_code == 200
                assert [len(slack.calls_of("chat.postMessage")), len(signal_connector.requests)] == [1, 1]
                assert len(telegram.calls_of("sendMessage")) == 1

                # --- the CLI, in-process (DEBUG logs into the capture) --------------------------------
                for name, value in clean_env(
                    home=str(settings.home),
                    db_url=db_url,
                    vault_key=vault_key,
                    public_url=PUBLIC_URL,
                    bootstrap_api_key=BOOTSTRAP_KEY,
                    telegram_api_url=telegram.root,
                    slack_api_url=slack.root + "/api/",
                    log_level="DEBUG",
                ).items():
                    if name.startswith("CHATBOX_"):
                        monkeypatch.setenv(name, value)
                cli_outputs: dict[str, str] = {}
                new_tokens: list[str] = []
                for command in (
                    ["operator", "mailbox-list"],
                    ["operator", "connection-list", mailboxes["slack"]["id"]],
                    ["operator", "connection-resync", sl["id"]],
                    ["operator", "mailbox-health", mailboxes["telegram"]["id"]],
                    ["operator", "tail-deliveries", mailboxes["telegram"]["id"]],
                    ["operator", "mailbox-regenerate-mcp-token", mailboxes["signal"]["id"]],
                    ["vault", "rotate"],
                ):
                    get_settings.cache_clear()
                    invoked = CliRunner().invoke(cli_app, command)
                    assert invoked.exit_code == 0, (command, invoked.output, invoked.exception)
                    output = invoked.stdout
                    if command[1] == "mailbox-regenerate-mcp-token":  # printed once, by design: not a leak
                        new_tokens.append(output.rsplit(": ", 1)[1].strip())
                        output = output.replace(new_tokens[-1], "<new token>")
                    cli_outputs[f"stdout of chatbox {' '.join(command)}"] = output
                    cli_outputs[f"stderr of chatbox {' '.join(command)}"] = invoked.stderr
                get_settings.cache_clear()

                # --- the CLI as a subprocess at DEBUG: resync Telegram (a new secret), archive Slack ----
                env = clean_env(
                    home=str(settings.home),
                    db_url=db_url,
                    vault_key=vault_key,
                    public_url=PUBLIC_URL,
                    telegram_api_url=telegram.root,
                    slack_api_url=slack.root + "/api/",
                    log_level="DEBUG",
                )
                subprocess_outputs: dict[str, str] = {}
                for command in (
                    ["operator", "connection-resync", tg["id"]],
                    ["operator", "connection-archive", sl["id"]],
                ):
                    done = run_chatbox(*command, env=env, cwd=tmp_path)
                    assert done.returncode == 0, done.stderr
                    subprocess_outputs[f"stdout of subprocess chatbox {' '.join(command)}"] = done.stdout
                    subprocess_outputs[f"stderr of subprocess chatbox {' '.join(command)}"] = done.stderr
                telegram_secrets.append(str(telegram.webhooks[TELEGRAM_TOKEN]["secret_token"]))
                assert telegram_secrets[1] != telegram_secrets[0]
                assert (
                    " DEBUG "
                    in subprocess_outputs[f"stderr of subprocess chatbox operator connection-resync {tg['id']}"]
                )
                # Telegram is archived over the API: deleteWebhook with its token.
                assert created(client.delete(f"/v1/connections/{tg['id']}", headers=auth))["status"] == "archived"
                assert telegram.calls_of("deleteWebhook")
        finally:
            runtime.close()

    printed = capsys.readouterr()
    captured.outputs |= cli_outputs | subprocess_outputs
    captured.outputs["stdout of the test process"] = printed.out
    captured.outputs["stderr of the test process"] = printed.err
    captured.outputs["pytest's caplog text"] = caplog.text
    every_secret = {
        "vault key": vault_key,
        "bootstrap API key": BOOTSTRAP_KEY,
        "generated API key": generated_key,
        **{f"MCP token of the {p} mailbox": m["mcp_token"] for p, m in mailboxes.items()},
        "regenerated MCP token": new_tokens[0],
        **{f"inbound token of the {c['platform']} connection": c["inbound_token"] for c in (tg, sl, sig)},
        "hmac_signing secret": signing_secret,
        "hmac_signing key (base64)": signing_secret.removeprefix("whsec_"),
        "webhook_auth credential": WEBHOOK_AUTH,
        "mcp_proxy_auth credential": MCP_PROXY_AUTH,
        "platform credential": PLATFORM_CREDENTIAL,
        "Telegram bot token": TELEGRAM_TOKEN,
        "Telegram bot token's secret part": TELEGRAM_TOKEN.split(":", 1)[1],
        "Slack bot token": SLACK_TOKEN,
        "Slack signing secret": SLACK_SIGNING,
        **{f"Telegram webhook secret #{i + 1}": s for i, s in enumerate(telegram_secrets)},
        "webhook URL password": HOOK_PASSWORD,
        "webhook URL query token": HOOK_QUERY_TOKEN,
        "webhook URL userinfo (Basic)": base64.b64encode(f"hookuser:{HOOK_PASSWORD}".encode()).decode(),
        **WRONG,
    }

    leaks = captured.leaks(every_secret)

    assert leaks == [], "\n".join(leaks)
    # The capture saw the paths that used to leak, redacted: httpx naming the webhook URL on every delivery
    # attempt, uvicorn's access lines with a token in the query, the Slack SDK's DEBUG request lines.
    messages = [_message(record) for record in captured.records]
    assert sum("HTTP Request: POST http://" in m and "/hook?token=[REDACTED]&v=[REDACTED]" in m for m in messages) == 6
    assert any(r.name == "uvicorn.access" and "token=[REDACTED]" in _message(r) for r in captured.records)
    assert any(r.name.startswith("slack_sdk") for r in captured.records)
    assert any(r.name == "uvicorn.error" and r.levelno < logging.DEBUG for r in captured.records)  # trace lines
    assert len(captured.records) > 100
