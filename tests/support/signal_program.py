"""Running `python -m connectors.signal` as a real subprocess, as an operator (or a container) would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import wait_for
from tests.support.ports import reserved_port

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
def running_program(tmp_path: Path, name: str = "signal", port: int | None = None, **values: str) -> Iterator[Program]:
    """Start the program (on `port`, else a free one), wait until /healthz answers; always stop it (SIGKILL if it
    still runs). Its state folder is `tmp_path/state`, so a second run in the same `tmp_path` finds the spool."""
    with ExitStack() as stack:
        if port is None:
            port = stack.enter_context(reserved_port())
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
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
