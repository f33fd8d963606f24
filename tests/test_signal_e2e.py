"""The Signal program between the signal-cli stand-in and a real `chatbox dev` (API, queue, worker, webhook):
a Signal message reaches the agent as a signed webhook, an MCP send reaches signal-cli, and nothing is lost
or delivered twice across a kill -9 of the program or while chatbox is down."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mcp import types
from standardwebhooks import Webhook

from tests.support.cli import CHATBOX, clean_env, wait_for
from tests.support.mcp import mcp_client, run_async, text_of
from tests.support.payloads import load_payload
from tests.support.pipeline import new_signing_secret
from tests.support.ports import reserved_port
from tests.support.receiver import WebhookReceiver, running_receiver
from tests.support.signal_cli import SignalCliStandIn, running_signal_cli
from tests.support.signal_program import ACCOUNT, ADA, OUTBOUND_AUTH, Program, running_program

KEY = "cbk_signal-e2e-bootstrap-key-0123456789abc"
STARTUP_SECONDS = 60
WAIT_SECONDS = 60


@contextmanager
def chatbox_dev(workdir: Path, port: int, name: str) -> Iterator[str]:
    """`chatbox dev` on `port` with its data in `workdir` (so a restart keeps it); stopped afterwards."""
    workdir.mkdir(exist_ok=True)
    env = clean_env(api_port=str(port), bootstrap_api_key=KEY)
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
        wait_for(healthy, timeout=STARTUP_SECONDS, what="chatbox dev /health")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@dataclass
class Setup:
    secret: str
    mailbox: dict[str, Any]
    connection: dict[str, Any]

    def program_vars(self, base_url: str, signal_cli: SignalCliStandIn) -> dict[str, str]:
        return {
            "CHATBOX_API_URL": base_url,
            "CHATBOX_CONNECTION_ID": self.connection["id"],
            "CHATBOX_INBOUND_TOKEN": self.connection["inbound_token"],
            "SIGNAL_CLI_URL": signal_cli.url,
        }


def set_up_signal_mailbox(base_url: str, receiver: WebhookReceiver, connector_port: int) -> Setup:
    secret = new_signing_secret()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as api:
        signing = api.post("/v1/credentials", json={"name": "sig", "kind": "hmac_signing", "value": secret})
        outbound = api.post("/v1/credentials", json={"name": "out", "kind": "mcp_proxy_auth", "value": OUTBOUND_AUTH})
        mailbox = api.post(
            "/v1/mailboxes",
            json={"name": "agent", "webhook_url": receiver.url, "signing_credential_id": signing.json()["id"]},
        )
        assert mailbox.status_code == 201, mailbox.text
        connection = api.post(
            f"/v1/mailboxes/{mailbox.json()['id']}/connections",
            json={
                "platform": "signal",
                "config": {
                    "outbound_url": f"http://127.0.0.1:{connector_port}/v1/send",
                    "outbound_credential_id": outbound.json()["id"],
                },
            },
        )
        assert connection.status_code == 201, connection.text
    return Setup(secret, mailbox.json(), connection.json())


def text_message(n: int) -> dict[str, Any]:
    """A direct message from Ada, as signal-cli reports it, with its own timestamp."""
    params = load_payload("signal", "direct_text")
    timestamp = 1764170500000 + n
    params["envelope"]["timestamp"] = timestamp
    params["envelope"]["dataMessage"]["timestamp"] = timestamp
    params["envelope"]["dataMessage"]["message"] = f"message {n}"
    return params


def connected(signal_cli: SignalCliStandIn, count: int) -> bool | None:
    return len(signal_cli.event_stream_requests) >= count or None


def spool_of(program: Program) -> int:
    return int(program.health().json()["spool"])


def test_a_signal_message_reaches_the_agent_signed_and_an_mcp_send_reaches_signal(tmp_path: Path) -> None:
    with (
        running_receiver() as receiver,
        running_signal_cli(ACCOUNT) as signal_cli,
        reserved_port() as chatbox_port,
        reserved_port() as connector_port,
        chatbox_dev(tmp_path / "chatbox", chatbox_port, "chatbox") as base_url,
    ):
        setup = set_up_signal_mailbox(base_url, receiver, connector_port)
        with running_program(tmp_path, port=connector_port, **setup.program_vars(base_url, signal_cli)) as program:
            wait_for(lambda: connected(signal_cli, 1), timeout=WAIT_SECONDS, what="the event stream")
            signal_cli.push(load_payload("signal", "direct_text"))
            [request] = receiver.wait_for(1, timeout=WAIT_SECONDS)

            async def agent_replies() -> list[types.CallToolResult]:
                url = f"{base_url}/mcp/{setup.mailbox['id']}"
                async with mcp_client(url, setup.mailbox["mcp_token"]) as session:
                    return [
                        await session.call_tool("switch_chat", {"chat_id": f"signal:{ADA}"}),
                        await session.call_tool(
                            "send_message", {"text": "On my way.", "reply_to": f"{ADA}:1764170418123"}
                        ),
                    ]

            switched, sent = run_async(agent_replies)
            logs = program.logs()

    payload = Webhook(setup.secret).verify(request.body, request.headers)
    assert payload["chat_id"] == f"signal:{ADA}"
    assert payload["message"]["text"] == "hi, are you there?"
    assert payload["message"]["external_id"] == f"{ADA}:1764170418123"
    assert payload["message"]["sender_name"] == "Ada"
    assert not switched.is_error and not sent.is_error, text_of(sent)
    assert signal_cli.sends == [
        {"message": "On my way.", "recipient": [ADA], "quoteTimestamp": 1764170418123, "quoteAuthor": ADA}
    ]
    assert sent.structured_content is not None
    assert sent.structured_content["external_id"] == f"{ACCOUNT}:1764170419457"
    assert setup.connection["inbound_token"] not in logs and OUTBOUND_AUTH not in logs


def test_nothing_is_lost_or_delivered_twice_across_a_kill_and_while_chatbox_is_down(tmp_path: Path) -> None:
    with (
        running_receiver() as receiver,
        running_signal_cli(ACCOUNT) as signal_cli,
        reserved_port() as chatbox_port,
        reserved_port() as connector_port,
    ):
        with chatbox_dev(tmp_path / "chatbox", chatbox_port, "chatbox-1") as base_url:
            setup = set_up_signal_mailbox(base_url, receiver, connector_port)
            program_vars = setup.program_vars(base_url, signal_cli)
            with running_program(tmp_path, "first", port=connector_port, **program_vars) as first:
                wait_for(lambda: connected(signal_cli, 1), timeout=WAIT_SECONDS, what="the event stream")
                for n in range(30):
                    signal_cli.push(text_message(n))
                receiver.wait_for(3, timeout=WAIT_SECONDS)
                first.process.kill()  # mid-stream: some delivered, some spooled, some not yet read
                first.process.wait(timeout=15)
            for n in range(30, 40):
                signal_cli.push(text_message(n))  # while the program is down
            with running_program(tmp_path, "second", port=connector_port, **program_vars) as second:
                receiver.wait_for(40, timeout=WAIT_SECONDS)
                wait_for(lambda: spool_of(second) == 0 or None, timeout=WAIT_SECONDS, what="an empty spool")
                resumed_from = signal_cli.event_stream_requests[1]

        # chatbox is down: messages arriving now wait in the spool.
        with running_program(tmp_path, "third", port=connector_port, **program_vars) as third:
            wait_for(lambda: connected(signal_cli, 3), timeout=WAIT_SECONDS, what="the event stream")
            for n in range(40, 45):
                signal_cli.push(text_message(n))
            wait_for(lambda: spool_of(third) == 5 or None, timeout=WAIT_SECONDS, what="five spooled messages")
            with chatbox_dev(tmp_path / "chatbox", chatbox_port, "chatbox-2"):
                receiver.wait_for(45, timeout=WAIT_SECONDS)
                wait_for(lambda: spool_of(third) == 0 or None, timeout=WAIT_SECONDS, what="the spool drained")
            logs = third.logs()

    delivered = [Webhook(setup.secret).verify(r.body, r.headers)["message"]["text"] for r in receiver.requests]
    assert sorted(delivered, key=lambda text: int(text.split()[1])) == [f"message {n}" for n in range(45)]
    assert len(delivered) == len(set(delivered)) == 45  # nothing twice
    assert resumed_from is not None  # the restart resumed the stream after the last event it kept
    assert setup.connection["inbound_token"] not in logs
