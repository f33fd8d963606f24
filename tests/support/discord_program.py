"""Running `python -m connectors.discord` as a real subprocess, as an operator (or a container) would, and a real
`chatbox dev` for it to talk to."""

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

from tests.support.cli import CHATBOX, clean_env, wait_for
from tests.support.discord_api import BOT_TOKEN, DiscordStandIn
from tests.support.ports import reserved_port

INBOUND_TOKEN = "inbound-token-discord-0123456789abcdef"
OUTBOUND_AUTH = "outbound-auth-discord-0123456789abcdef"
CONNECTION_ID = "conn_01JD3AAAAAAAAAAAAAAAAAAAAA"
STARTUP_SECONDS = 30
CHATBOX_KEY = "cbk_discord-e2e-bootstrap-key-0123456789ab"


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
        return httpx.post(f"{self.url}/v1/send", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=15)


def program_env(state_dir: Path, discord: DiscordStandIn | None, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOX_", "CONNECTOR_", "DISCORD_"))}
    env.update(
        {
            "CHATBOX_API_URL": "http://127.0.0.1:9",
            "CHATBOX_CONNECTION_ID": CONNECTION_ID,
            "CHATBOX_INBOUND_TOKEN": INBOUND_TOKEN,
            "CHATBOX_OUTBOUND_AUTH": OUTBOUND_AUTH,
            "CONNECTOR_HOST": "127.0.0.1",
            "CONNECTOR_STATE_DIR": str(state_dir),
            "CONNECTOR_RETRY_MAX_SECONDS": "0.5",
            "DISCORD_BOT_TOKEN": BOT_TOKEN,
            "DISCORD_API_URL": discord.root if discord is not None else "http://127.0.0.1:9/api/v10",
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
def running_program(
    tmp_path: Path, discord: DiscordStandIn, name: str = "discord", port: int | None = None, **values: str
) -> Iterator[Program]:
    """Start the program (on `port`, else a free one) and wait until /healthz answers; always stop it (SIGKILL if
    it still runs). Its state folder is `tmp_path/state`, so a second run in the same `tmp_path` finds the spool."""
    with ExitStack() as stack:
        if port is None:
            port = stack.enter_context(reserved_port())
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        env = program_env(state, discord, CONNECTOR_PORT=str(port), **values)
        log = tmp_path / f"{name}.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "connectors.discord"], env=env, cwd=tmp_path, stdout=sink, stderr=sink
            )
        program = Program(process, f"http://127.0.0.1:{port}", log)
        try:
            wait_for(lambda: _answers(program), timeout=STARTUP_SECONDS, what="the Discord program's /healthz")
            yield program
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=15)


def send_body(text: str, chat_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "request_id": f"req-{len(text)}-{text[:20]}",
        "connection_id": CONNECTION_ID,
        "platform": "discord",
        "chat_id": chat_id,
        "text": text,
        "reply_to": None,
        "options": {},
        **fields,
    }


@contextmanager
def chatbox_dev(workdir: Path, port: int, name: str = "chatbox") -> Iterator[str]:
    """`chatbox dev` on `port` with its data in `workdir` (so a restart keeps it); stopped afterwards."""
    workdir.mkdir(exist_ok=True)
    env = clean_env(api_port=str(port), bootstrap_api_key=CHATBOX_KEY)
    base_url = f"http://127.0.0.1:{port}"
    with (workdir.parent / f"{name}.out").open("ab") as out, (workdir.parent / f"{name}.err").open("ab") as err:
        process = subprocess.Popen([str(CHATBOX), "dev"], cwd=workdir, env=env, stdout=out, stderr=err)

    def healthy() -> bool | None:
        if process.poll() is not None:
            raise AssertionError(f"chatbox dev exited with {process.returncode}")
        try:
            return httpx.get(f"{base_url}/health", timeout=2).status_code == 200 or None
        except httpx.TransportError:
            return None

    try:
        wait_for(healthy, timeout=60, what="chatbox dev /health")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
