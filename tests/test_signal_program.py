"""`python -m connectors.signal` as a real subprocess against the signal-cli stand-in (no chatbox needed here):
configuration errors, /healthz, the /v1/send contract, SIGTERM, and what its logs never hold."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.cli import wait_for
from tests.support.payloads import load_payload
from tests.support.ports import reserved_port
from tests.support.signal_cli import running_signal_cli
from tests.support.signal_program import (
    ACCOUNT,
    ADA,
    INBOUND_TOKEN,
    OUTBOUND_AUTH,
    STARTUP_SECONDS,
    Program,
    program_env,
    running_program,
    send_body,
)

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "connectors" / "signal" / "entrypoint.sh"


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


def test_sigterm_lets_a_send_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    with running_signal_cli(ACCOUNT) as signal_cli, running_program(tmp_path, SIGNAL_CLI_URL=signal_cli.url) as program:
        signal_cli.send_delay = 1.0
        with ThreadPoolExecutor(max_workers=1) as pool:
            answer = pool.submit(program.send, send_body("slow"))
            wait_for(lambda: signal_cli.sends or None, timeout=10, what="the send to reach signal-cli")
            program.process.send_signal(signal.SIGTERM)
            sent = answer.result(timeout=30)
        exit_code = program.process.wait(timeout=30)

    assert sent.status_code == 200 and sent.json()["message_id"].startswith(f"{ACCOUNT}:")
    assert exit_code == 0


def test_it_runs_where_chatbox_is_not_installed(tmp_path: Path) -> None:
    """The image ships connectors/ alone: every module the program loads must import without the core."""
    blocked = (
        "import runpy, sys; sys.modules['chatbox'] = None; runpy.run_module('connectors.signal', run_name='__main__')"
    )
    finished = subprocess.run(
        [sys.executable, "-c", blocked],
        env=program_env(tmp_path, SIGNAL_ACCOUNT="<unset>"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (finished.returncode, finished.stderr) == (2, "configuration error: SIGNAL_ACCOUNT is not set\n")


def test_the_container_entrypoint_runs_signal_cli_and_the_program_and_stops_both(tmp_path: Path) -> None:
    """entrypoint.sh with the stand-in as the `signal-cli` executable: sends work, SIGTERM stops both, exit 0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "signal-cli"
    fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.support.signal_cli "$@"\n')
    fake.chmod(0o755)
    with reserved_port() as daemon_port, reserved_port() as port:
        env = program_env(
            tmp_path / "state",
            CONNECTOR_PORT=str(port),
            SIGNAL_CLI_LISTEN=f"127.0.0.1:{daemon_port}",
            SIGNAL_CLI_URL="<unset>",
            PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
            PYTHONPATH=str(REPO),
        )
        log = tmp_path / "entrypoint.log"
        with log.open("wb") as sink:
            process = subprocess.Popen([str(ENTRYPOINT)], env=env, cwd=tmp_path, stdout=sink, stderr=sink)
        program = Program(process, f"http://127.0.0.1:{port}", log)
        try:
            wait_for(lambda: _healthy(program), timeout=STARTUP_SECONDS, what="the container's /healthz to say ok")
            sent = program.send(send_body("from the container"))
            process.send_signal(signal.SIGTERM)
            exit_code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=15)
        daemon_gone = _refused(daemon_port)

    assert sent.status_code == 200, sent.text
    assert exit_code == 0, log.read_text()
    assert daemon_gone


def _healthy(program: Program) -> bool | None:
    if program.process.poll() is not None:
        raise AssertionError(f"the entrypoint exited with {program.process.returncode}:\n{program.logs()}")
    try:
        return program.health().status_code == 200 or None
    except httpx.TransportError:
        return None


def _refused(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/api/v1/check", timeout=2)
    except httpx.TransportError:
        return True
    return False
