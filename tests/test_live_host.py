"""The live host: long polls and managed connector programs that chatbox runs itself (`chatbox.local.live_host`).

Real parts: the echo platform's long poll against a stand-in on 127.0.0.1 (its `/updates` speaks like Telegram's
getUpdates), the parrot platform's program as a real child process that follows the container contract, the
real ASGI app served by uvicorn for the program to post to, and the real local queue and webhook receiver.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks import Webhook

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.local.live_host import LiveHost, free_loopback_port
from chatbox.ports.connector import OutboundMessage
from chatbox.runtime import Runtime
from chatbox.services.connections import connection_context, get_connection
from chatbox.store.models import Message, ServiceEvent
from tests.conftest import AccountKey, make_account, platforms_without_connectors
from tests.platforms.echo.spec import SPEC as ECHO
from tests.platforms.echo.spec import EchoSettings
from tests.platforms.parrot.spec import SPEC as PARROT
from tests.support.api import SIGNING_SECRET, assert_error, create_credential, create_mailbox
from tests.support.cli import CHATBOX, clean_env
from tests.support.mcp import serving
from tests.support.pipeline import eventually, running_consumer
from tests.support.plugins import platform_plugin
from tests.support.receiver import WebhookReceiver, running_receiver

API_KEY = "echo-key-0123456789"


@dataclass
class EchoUpdates:
    """The echo platform's API with a long poll: `GET /me`, `GET /updates?offset=N` (every update numbered N or
    more), `POST /send`. Records each offset asked for; `refusing` answers /updates 401."""

    updates: list[dict[str, Any]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    refusing: bool = False
    api_key: str = API_KEY  # the key the account has now (a rotation changes it)
    root: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, text: str) -> None:
        with self.lock:
            self.updates.append({"update": len(self.updates) + 1, "chat": "room-1", "from": "ada", "text": text})

    def handler(self) -> type[BaseHTTPRequestHandler]:
        api = self
        ids = itertools.count(1000)

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urlsplit(self.path)
                authorized = self.headers.get("authorization") == f"Bearer {api.api_key}"
                if url.path == "/updates":
                    offset = int(parse_qs(url.query).get("offset", ["0"])[0])
                    with api.lock:
                        api.offsets.append(offset)
                        if api.refusing or not authorized:
                            self._answer(401, {"error": "unauthorized"})
                            return
                        self._answer(200, {"updates": [u for u in api.updates if u["update"] >= offset]})
                    return
                if not authorized:
                    self._answer(401, {"error": "unauthorized"})
                    return
                self._answer(200, {"account": "echo-team"})

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self._answer(200, {"id": next(ids)})

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


@pytest.fixture
def echo_updates() -> Iterator[EchoUpdates]:
    api = EchoUpdates()
    server = ThreadingHTTPServer(("127.0.0.1", 0), api.handler())
    api.root = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def _runtime(db_url: str, home: Path, echo_api: str, *, runs_programs: bool = True) -> Runtime:
    settings = Settings(
        home=home,
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.test",
        allow_loopback_webhooks=True,
    )
    runtime = build_runtime(
        settings,
        platforms=[*platforms_without_connectors(), ECHO, PARROT],
        platform_settings={"echo": EchoSettings(api_url=echo_api)},
    )
    if runs_programs:
        runtime.program_port = free_loopback_port
    return runtime


@pytest.fixture
def host_runtime(db_url: str, tmp_path: Path, echo_updates: EchoUpdates) -> Iterator[Runtime]:
    runtime = _runtime(db_url, tmp_path / "home", echo_updates.root)
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def _signed_mailbox(client: TestClient, account: AccountKey, receiver: WebhookReceiver) -> dict[str, Any]:
    credential = create_credential(client, account, kind="hmac_signing")
    return create_mailbox(client, account, webhook_url=receiver.url, signing_credential_id=credential["id"])


def _create(client: TestClient, account: AccountKey, mailbox_id: str, body: dict[str, Any]) -> Any:
    return client.post(f"/v1/mailboxes/{mailbox_id}/connections", json=body, headers=account.headers)


def _polling_echo(client: TestClient, account: AccountKey, mailbox_id: str) -> dict[str, Any]:
    created = _create(
        client,
        account,
        mailbox_id,
        {"platform": "echo", "config": {"receive_mode": "polling"}, "secrets": {"api_key": API_KEY}},
    )
    assert created.status_code == 201, created.text
    connection: dict[str, Any] = created.json()
    return connection


def _config(runtime: Runtime, connection_id: str) -> dict[str, Any]:
    with runtime.db.session() as db:
        return dict(get_connection(db, None, connection_id).config)


def _connection_errors(runtime: Runtime, connection_id: str) -> list[str]:
    """The `error` of each `connection_error` service event recorded for the connection, oldest first."""
    with runtime.db.session() as db:
        events = db.scalars(
            select(ServiceEvent).where(ServiceEvent.type == "connection_error").order_by(ServiceEvent.id)
        ).all()
        return [e.data["error"] for e in events if e.data["connection_id"] == connection_id]


def _texts(runtime: Runtime) -> list[str]:
    with runtime.db.session() as db:
        return [m.text or "" for m in db.scalars(select(Message).where(Message.direction == "in").order_by(Message.id))]


# --- live sources ------------------------------------------------------------------------------------------


def test_a_long_polled_update_reaches_the_signed_webhook_and_archiving_stops_the_poll(
    host_runtime: Runtime, echo_updates: EchoUpdates, receiver: WebhookReceiver
) -> None:
    account = make_account(host_runtime)
    with TestClient(create_app(host_runtime)) as client:
        mailbox = _signed_mailbox(client, account, receiver)
        connection = _polling_echo(client, account, mailbox["id"])
        echo_updates.push("hello over the long poll")
        with (
            LiveHost(host_runtime, api_url="http://127.0.0.1:9", interval=0.1) as host,
            running_consumer(host_runtime),
        ):
            [delivered] = receiver.wait_for(1, timeout=30)
            runner = host.sources[connection["id"]]
            archived = client.delete(f"/v1/connections/{connection['id']}", headers=account.headers)
            eventually(lambda: connection["id"] not in host.sources and not runner.thread.is_alive(), timeout=30)

    payload = Webhook(SIGNING_SECRET).verify(delivered.body, delivered.headers)
    assert payload["chat_id"] == "echo:room-1"
    assert payload["message"]["text"] == "hello over the long poll"
    assert archived.status_code == 200, archived.text
    assert _config(host_runtime, connection["id"])["receive_cursor"] == "2"


def test_the_poll_resumes_from_its_saved_cursor_after_a_restart(
    host_runtime: Runtime, echo_updates: EchoUpdates
) -> None:
    account = make_account(host_runtime)
    with TestClient(create_app(host_runtime)) as client:
        mailbox = create_mailbox(client, account)
        connection = _polling_echo(client, account, mailbox["id"])
    echo_updates.push("first")
    echo_updates.push("second")
    with LiveHost(host_runtime, api_url="http://127.0.0.1:9", interval=0.1):
        eventually(lambda: _config(host_runtime, connection["id"]).get("receive_cursor") == "3", timeout=30)
    asked_before_restart = len(echo_updates.offsets)
    echo_updates.push("third")

    with LiveHost(host_runtime, api_url="http://127.0.0.1:9", interval=0.1):
        eventually(lambda: _config(host_runtime, connection["id"]).get("receive_cursor") == "4", timeout=30)

    assert echo_updates.offsets[asked_before_restart] == 3  # the restarted poll asked from where the first stopped
    assert _texts(host_runtime) == ["first", "second", "third"]


def test_a_refused_source_is_reported_once_and_not_restarted_in_a_loop(
    host_runtime: Runtime, echo_updates: EchoUpdates, caplog: pytest.LogCaptureFixture
) -> None:
    account = make_account(host_runtime)
    with TestClient(create_app(host_runtime)) as client:
        mailbox = create_mailbox(client, account)
        connection = _polling_echo(client, account, mailbox["id"])
    echo_updates.refusing = True
    host = LiveHost(host_runtime, api_url="http://127.0.0.1:9", refused_retry=300)
    try:
        with caplog.at_level(logging.WARNING, logger="chatbox.local.live_host"):
            host.reconcile()
            eventually(lambda: "echo refused connection" in caplog.text, timeout=30)
            runner = host.sources[connection["id"]]
            for _ in range(5):
                host.reconcile()
        assert host.sources == {connection["id"]: runner}
        assert runner.thread.is_alive()
        assert len(echo_updates.offsets) == 1
        assert caplog.text.count("echo refused connection") == 1
        assert _connection_errors(host_runtime, connection["id"]) == ["echo refused secrets.api_key"]
    finally:
        host.stop()
    assert not runner.thread.is_alive()


def test_a_rotated_secret_restarts_the_live_source_with_the_new_one(
    host_runtime: Runtime, echo_updates: EchoUpdates
) -> None:
    account = make_account(host_runtime)
    with TestClient(create_app(host_runtime)) as client:
        mailbox = create_mailbox(client, account)
        connection = _polling_echo(client, account, mailbox["id"])
        echo_updates.push("before the rotation")
        with LiveHost(host_runtime, api_url="http://127.0.0.1:9", interval=0.1) as host:
            eventually(lambda: _texts(host_runtime) == ["before the rotation"], timeout=30)
            first = host.sources[connection["id"]]
            echo_updates.api_key = "echo-key-rotated-9876543210"  # the old key stops working at the platform
            patched = client.patch(
                f"/v1/connections/{connection['id']}",
                json={"secrets": {"api_key": echo_updates.api_key}},
                headers=account.headers,
            )
            assert patched.status_code == 200, patched.text
            echo_updates.push("after the rotation")
            eventually(lambda: _texts(host_runtime) == ["before the rotation", "after the rotation"], timeout=30)
            assert host.sources[connection["id"]] is not first
            eventually(lambda: not first.thread.is_alive(), timeout=30)


# --- managed container connections ------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _greeting_pids(runtime: Runtime) -> list[int]:
    return [int(text.rsplit(" ", 1)[1]) for text in _texts(runtime) if text.startswith("hi from pid")]


def test_a_managed_connection_runs_its_program_restarts_it_when_killed_and_stops_it_on_archive(
    host_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    account = make_account(host_runtime)
    with TestClient(create_app(host_runtime)) as client, serving(create_app(host_runtime)) as base_url:
        mailbox = create_mailbox(client, account)
        created = _create(client, account, mailbox["id"], {"platform": "parrot", "config": {"greeting": "hi"}})
        assert created.status_code == 201, created.text
        connection = created.json()
        with (
            caplog.at_level(logging.INFO, logger="chatbox.connectors"),
            LiveHost(host_runtime, api_url=base_url, interval=0.1, stop_timeout=5) as host,
        ):
            [first] = eventually(lambda: _greeting_pids(host_runtime), timeout=30)
            runner = host.programs[connection["id"]]
            assert runner.pid == first
            with host_runtime.db.session() as db:
                ctx = connection_context(db, host_runtime.vault, get_connection(db, None, connection["id"]))
            sent = host_runtime.platforms.connector("parrot").send(ctx, OutboundMessage(chat_id="room-1", text="yo"))

            os.kill(first, signal.SIGKILL)
            second = eventually(lambda: [p for p in _greeting_pids(host_runtime) if p != first], timeout=30)[0]
            archived = client.delete(f"/v1/connections/{connection['id']}", headers=account.headers)
            eventually(lambda: not _pid_alive(second) and not runner.thread.is_alive(), timeout=30)

    config = connection["config"]
    assert config["managed"] is True
    assert config["outbound_url"].startswith("http://127.0.0.1:") and config["outbound_url"].endswith("/v1/send")
    assert config["outbound_credential_id"].startswith("cred_")
    assert sent.external_id.startswith(f"sent-{first}-")
    state_dir = host_runtime.settings.home / "connectors" / connection["id"]
    [sent_body] = [json.loads(line) for line in (state_dir / "sent.jsonl").read_text().splitlines()]
    assert sent_body["text"] == "yo" and sent_body["chat_id"] == "room-1"
    assert archived.status_code == 200, archived.text
    assert f"[parrot {connection['id']}] parrot listening" in caplog.text
    # The killed program is news for the integrators: one `connection_error`.
    assert [e for e in _connection_errors(host_runtime, connection["id"]) if "program exited" in e]
    assert ctx.secrets["outbound_auth"] not in caplog.text


def test_without_a_program_runner_a_container_connection_stays_operator_run(
    db_url: str, tmp_path: Path, echo_updates: EchoUpdates
) -> None:
    runtime = _runtime(db_url, tmp_path / "home", echo_updates.root, runs_programs=False)
    try:
        account = make_account(runtime)
        with TestClient(create_app(runtime)) as client:
            mailbox = create_mailbox(client, account)
            created = _create(client, account, mailbox["id"], {"platform": "parrot"})
    finally:
        runtime.close()

    assert created.status_code == 201, created.text
    assert created.json()["config"] == {}


def test_managed_input_is_checked_at_create_and_reserved_keys_are_refused(host_runtime: Runtime) -> None:
    account = make_account(host_runtime)
    with TestClient(create_app(host_runtime)) as client:
        mailbox = create_mailbox(client, account)
        no_account = _create(client, account, mailbox["id"], {"platform": "signal"})
        bad_account = _create(client, account, mailbox["id"], {"platform": "signal", "config": {"account": "0151"}})
        no_token = _create(client, account, mailbox["id"], {"platform": "discord"})
        reserved = _create(client, account, mailbox["id"], {"platform": "parrot", "config": {"managed": True}})
        signal_ok = _create(
            client, account, mailbox["id"], {"platform": "signal", "config": {"account": "+4915112345678"}}
        )

    for refused in (no_account, bad_account, no_token, reserved):
        assert_error(refused, 422, "invalid_input")
    assert "config.account" in no_account.json()["message"]
    assert "secrets.bot_token" in no_token.json()["message"]
    assert "config.managed" in reserved.json()["message"]
    assert signal_ok.status_code == 201, signal_ok.text
    assert signal_ok.json()["config"]["managed"] is True


# --- the CLI ---------------------------------------------------------------------------------------------


def test_connector_run_starts_the_program_in_the_foreground_and_stops_it_on_sigterm(
    host_runtime: Runtime, tmp_path: Path
) -> None:
    account = make_account(host_runtime)
    with TestClient(create_app(host_runtime)) as client, serving(create_app(host_runtime)) as base_url:
        mailbox = create_mailbox(client, account)
        created = _create(client, account, mailbox["id"], {"platform": "parrot", "config": {"greeting": "hi"}})
        connection_id = created.json()["id"]
        env = clean_env(
            db_url=host_runtime.settings.db_url,
            vault_key=host_runtime.settings.vault_key,
            home=str(host_runtime.settings.home),
        )
        env["PYTHONPATH"] = platform_plugin(tmp_path, parrot="tests.platforms.parrot.spec:SPEC")
        output = tmp_path / "connector-run.out"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [str(CHATBOX), "connector", "run", connection_id, "--api-url", base_url],
                env=env,
                cwd=tmp_path,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            try:
                [pid] = eventually(lambda: _greeting_pids(host_runtime), timeout=60)
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=30)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        unknown = subprocess.run(
            [str(CHATBOX), "connector", "run", "conn_01JD3ZZZZZZZZZZZZZZZZZZZZZ"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert code == 0, output.read_text()
    assert not _pid_alive(pid)
    assert "parrot stopped" in output.read_text()
    assert unknown.returncode == 1
    assert "connection not found" in unknown.stderr
