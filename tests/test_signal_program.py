"""`python -m connectors.signal` as a real subprocess against the signal-cli stand-in (no chatbox needed here):
configuration errors, /healthz, the /v1/send contract, SIGTERM, and what its logs never hold."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import wait_for
from tests.support.payloads import load_payload
from tests.support.ports import reserved_port
from tests.support.signal_cli import running_signal_cli

ACCOUNT = "+4915100000001"
ADA = "+4915112345678"
INBOUND_TOKEN = "inbound-token-signal-0123456789abcdef"
OUTBOUND_AUTH = "outbound-auth-signal-0123456789abcdef"
STARTUP_SECONDS = 30


@dataclass
class Program:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def logs(self) -> str:
        return self.log.read_text()

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.url}/healthz", timeout=5)

    def send(self, body: dict[str, Any], token: str = OUTBOUND_AUTH) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/send", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def program_env(state_dir: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOX_", "CONNECTOR_", "SIGNAL_"))}
    env.update(
        {
            "CHATBOX_API_URL": "http://127.0.0.1:9",
            "CHATBOX_CONNECTION_ID": "conn_01JD3AAAAAAAAAAAAAAAAAAAAA",
            "CHATBOX_INBOUND_TOKEN": INBOUND_TOKEN,
            "CHATBOX_OUTBOUND_AUTH": OUTBOUND_AUTH,
            "CONNECTOR_HOST": "127.0.0.1",
            "CONNECTOR_STATE_DIR": str(state_dir),
            "CONNECTOR_RETRY_MAX_SECONDS": "0.5",
            "SIGNAL_ACCOUNT": ACCOUNT,
            "SIGNAL_CLI_URL": "http://127.0.0.1:9",
        }
    )
    env.update(values)
    return {k: v for k, v in env.items() if v != "<unset>"}


def _answers(program: Program) -> bool | None:
    if program.process.poll() is not None:
        raise AssertionError(f"the program exited with {program.process.returncode}:\n{program.logs()}")
    try:
        program.health()
    except httpx.TransportError:
        return None
    return True


@contextmanager
def running_program(tmp_path: Path, name: str = "signal", **values: str) -> Iterator[Program]:
    """Start the program on a free port, wait until /healthz answers; always stop it (SIGKILL if it hangs)."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    with reserved_port() as port:
        env = program_env(state, CONNECTOR_PORT=str(port), **values)
        log = tmp_path / f"{name}.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "connectors.signal"], env=env, cwd=tmp_path, stdout=sink, stderr=sink
            )
        program = Program(process, f"http://127.0.0.1:{port}", log)
        try:
            wait_for(lambda: _answers(program), timeout=STARTUP_SECONDS, what="the Signal program's /healthz")
            yield program
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=15)


def send_body(text: str = "On my way.", chat_id: str = ADA, **fields: Any) -> dict[str, Any]:
    return {
        "request_id": f"req-{text}",
        "connection_id": "conn_01JD3AAAAAAAAAAAAAAAAAAAAA",
        "platform": "signal",
        "chat_id": chat_id,
        "text": text,
        "reply_to": None,
        "options": {},
        **fields,
    }


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SIGNAL_ACCOUNT", "<unset>"), ("SIGNAL_ACCOUNT", "4915100000001"), ("CHATBOX_OUTBOUND_AUTH", "<unset>")],
    ids=["no-account", "account-not-e164", "no-outbound-auth"],
)
def test_a_missing_or_malformed_variable_stops_it_with_one_line(tmp_path: Path, variable: str, value: str) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "connectors.signal"],
        env=program_env(tmp_path, **{variable: value}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert finished.stderr.count("\n") == 1 and variable in finished.stderr
    assert INBOUND_TOKEN not in finished.stderr


def test_it_serves_sends_and_health_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with running_signal_cli(ACCOUNT) as signal_cli, running_program(tmp_path, SIGNAL_CLI_URL=signal_cli.url) as program:
        health = program.health()
        sent = program.send(send_body("On my way.", reply_to=f"{ADA}:1764170418123"))
        group = program.send(send_body("hi all", chat_id="Pmpi+EfPWmsxiomLe9Nx2XF9HOE483p6iKiFj65iMwI="))
        signal_cli.fail_next(-1, "Invalid group id")
        refused = program.send(send_body("nope", chat_id="bm9zdWNoZ3JvdXA="))
        signal_cli.answer_next(
            {
                "timestamp": 1,
                "results": [{"recipientAddress": {"number": ADA}, "type": "UNREGISTERED_FAILURE"}],
            }
        )
        unregistered = program.send(send_body("gone"))
        wrong_bearer = program.send(send_body("x"), token="wrong")
        junk = httpx.post(
            f"{program.url}/v1/send", content=b"{", headers={"Authorization": f"Bearer {OUTBOUND_AUTH}"}, timeout=5
        )
        invalid = program.send({"text": "no chat"})
        program.process.send_signal(signal.SIGTERM)
        exit_code = program.process.wait(timeout=30)

    assert health.status_code == 200
    assert (health.json()["signal_cli"], health.json()["spool"]) == ("ok", 0)
    assert sent.status_code == 200 and sent.json()["message_id"] == f"{ACCOUNT}:{1764170419457}"
    assert group.status_code == 200
    assert signal_cli.sends[0] == {
        "message": "On my way.",
        "recipient": [ADA],
        "quoteTimestamp": 1764170418123,
        "quoteAuthor": ADA,
    }
    assert signal_cli.sends[1] == {"message": "hi all", "groupId": "Pmpi+EfPWmsxiomLe9Nx2XF9HOE483p6iKiFj65iMwI="}
    assert (refused.status_code, refused.json()["code"], refused.json()["message"]) == (
        400,
        "signal_refused",
        "Invalid group id",
    )
    assert (unregistered.status_code, unregistered.json()["code"]) == (404, "unregistered_recipient")
    assert wrong_bearer.status_code == 401
    assert junk.status_code == 400 and invalid.status_code == 422
    assert len(signal_cli.sends) == 4  # neither the bad bearer nor the bad bodies reached signal-cli
    assert exit_code == 0
    logs = program.logs()
    for line in logs.splitlines():
        json.loads(line)  # structured: one JSON object per line
    assert INBOUND_TOKEN not in logs and OUTBOUND_AUTH not in logs
    assert "stopped" in logs


def test_healthz_is_503_while_signal_cli_does_not_answer_and_messages_wait_in_the_spool(tmp_path: Path) -> None:
    with running_signal_cli(ACCOUNT) as signal_cli:
        signal_cli.push(load_payload("signal", "direct_text"))
        with running_program(tmp_path, SIGNAL_CLI_URL=signal_cli.url) as program:
            # No Last-Event-ID yet: a fresh program starts with what comes next, so push after it connected.
            wait_for(lambda: signal_cli.event_stream_requests or None, timeout=10, what="the event stream")
            signal_cli.push(load_payload("signal", "quote_reply"))
            spooled = wait_for(
                lambda: (h := program.health().json())["spool"] == 1 and h or None, timeout=10, what="one spooled"
            )
    assert spooled["signal_cli"] == "ok" and "chatbox" in spooled  # chatbox (port 9) is unreachable

    with running_program(tmp_path, name="no-daemon", SIGNAL_CLI_URL="http://127.0.0.1:9") as program:
        health = program.health()
        down = program.send(send_body("x"))
    assert health.status_code == 503 and health.json()["signal_cli"] == "unreachable"
    assert health.json()["spool"] == 1  # kept across the restart
    assert down.status_code == 503 and down.json()["code"] == "platform_unavailable"
