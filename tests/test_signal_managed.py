"""Signal with one command: `chatbox dev` runs the real Signal program (`python -m connectors.signal`) for a
connection created without outbound_url, against the signal-cli stand-in; a Signal message reaches the agent
signed, an MCP send reaches signal-cli, and stopping chatbox dev stops the program."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
from mcp import types
from standardwebhooks import Webhook

from tests.support.cli import wait_for
from tests.support.mcp import mcp_client, run_async, text_of
from tests.support.payloads import load_payload
from tests.support.pipeline import new_signing_secret
from tests.support.receiver import running_receiver
from tests.support.signal_cli import running_signal_cli
from tests.support.signal_program import ACCOUNT, ADA
from tests.test_dev import BOOTSTRAP_KEY, chatbox_dev

WAIT_SECONDS = 60
STARTED = re.compile(r"started the signal program of connection (\S+) \(pid (\d+)\)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_chatbox_dev_runs_the_signal_program_of_a_managed_connection(tmp_path: Path) -> None:
    secret = new_signing_secret()
    workdir = tmp_path / "project"
    workdir.mkdir()
    with (
        running_receiver() as receiver,
        running_signal_cli(ACCOUNT) as signal_cli,
        chatbox_dev(workdir, "signal-managed", bootstrap_api_key=BOOTSTRAP_KEY) as run,
        httpx.Client(base_url=run.base_url, headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"}, timeout=10) as api,
    ):
        signing = api.post("/v1/credentials", json={"name": "sig", "kind": "hmac_signing", "value": secret})
        mailbox = api.post(
            "/v1/mailboxes",
            json={"name": "agent", "webhook_url": receiver.url, "signing_credential_id": signing.json()["id"]},
        ).json()
        created = api.post(
            f"/v1/mailboxes/{mailbox['id']}/connections",
            json={"platform": "signal", "config": {"account": ACCOUNT, "signal_cli_url": signal_cli.url}},
        )
        assert created.status_code == 201, created.text
        wait_for(lambda: signal_cli.event_stream_requests or None, timeout=WAIT_SECONDS, what="the event stream")
        signal_cli.push(load_payload("signal", "direct_text"))
        [request] = receiver.wait_for(1, timeout=WAIT_SECONDS)

        async def agent_replies() -> types.CallToolResult:
            async with mcp_client(f"{run.base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                await session.call_tool("switch_chat", {"chat_id": f"signal:{ADA}"})
                return await session.call_tool("send_message", {"text": "On my way."})

        sent = run_async(agent_replies)
        [(connection_id, pid)] = STARTED.findall(run.errors())

    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["chat_id"] == f"signal:{ADA}"
    assert payload["message"]["text"] == "hi, are you there?"
    assert not sent.is_error, text_of(sent)
    assert [s["message"] for s in signal_cli.sends] == ["On my way."]
    assert connection_id == created.json()["id"]
    assert f"[signal {connection_id}]" in run.errors()
    assert created.json()["inbound_token"] not in run.errors()
    assert not _alive(int(pid))
