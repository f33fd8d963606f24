"""Benchmark of MCP `send_message` through the SDK's own client on `chatbox dev`, against a Telegram stand-in.

What runs, each on a free 127.0.0.1 port in a temporary folder:

- a Telegram Bot API stand-in (`tests/support/platforms.py`'s `TelegramBotApi`: getMe, setWebhook, sendMessage
  with Telegram's JSON), in this process;
- `chatbox dev` as it starts by default (SQLite, the delivery worker child), with `CHATBOX_TELEGRAM_API_URL` on
  the stand-in and a telegram connection in webhook mode created through the REST API; one inbound update
  through the ingest route makes the chat;
- the MCP SDK's client (`mcp.Client` over streamable HTTP, as `tests/support/mcp.py` opens it) on the mailbox's
  MCP URL, one session for the whole run, as an agent keeps it.

Measured in the same run, call by call interleaved (after a warm-up):
- the baseline: the bare stand-in `sendMessage` call (an httpx POST with a JSON body), what chatbox's own
  call to Telegram costs at least;
- `send_message` through MCP: tool call -> chatbox -> the stand-in's sendMessage -> stored -> tool result.

Run by hand: `.venv/bin/python bench/mcp_send.py` (about 30 s); `--calls`, `--era`, `--keep`.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
from pipeline import chatbox_command, chatbox_env, free_port, running_server, say, verdict

REPO_DIR = Path(__file__).resolve().parent.parent
BOT_TOKEN = "7012345678:AAHbenchbenchbenchbenchbenchbench00"
BOT = {"id": 7012345678, "is_bot": True, "first_name": "Bench", "username": "bench_bot"}
CHAT = 4242
TARGET_P50_MS = 10.0


def _support() -> Any:
    # tests/ is not installed; its stand-ins and MCP client helper are the ones the suite uses.
    sys.path.insert(0, str(REPO_DIR))
    import tests.support.mcp as mcp_support
    import tests.support.platforms as platforms

    return platforms, mcp_support


def _set_up(base_url: str, api_key: str, stand_in: Any) -> tuple[str, str]:
    """A mailbox, a telegram connection and one inbound message; returns (the MCP URL on loopback, its token)."""
    with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {api_key}"}, timeout=30.0) as client:
        mailbox = client.post("/v1/mailboxes", json={"name": "bench"}).raise_for_status().json()
        connection = client.post(
            f"/v1/mailboxes/{mailbox['id']}/connections",
            json={"platform": "telegram", "secrets": {"bot_token": BOT_TOKEN}},
        )
        connection_id = connection.raise_for_status().json()["id"]
    secret = stand_in.webhooks[BOT_TOKEN]["secret_token"]
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "from": {"id": CHAT, "is_bot": False, "first_name": "Ada"},
            "chat": {"id": CHAT, "type": "private", "first_name": "Ada"},
            "date": int(time.time()),
            "text": "hello",
        },
    }
    ingest = httpx.post(
        f"{base_url}/v1/ingest/telegram/{connection_id}",
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": secret},
        timeout=30.0,
    )
    ingest.raise_for_status()
    return f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]


async def _measure(mcp_url: str, token: str, stand_in_root: str, calls: int, warmup: int, era: str) -> Any:
    _, mcp_support = _support()
    bare: list[float] = []
    tool: list[float] = []
    send_url = f"{stand_in_root}/bot{BOT_TOKEN}/sendMessage"
    async with (
        httpx.AsyncClient(timeout=30.0) as http,
        mcp_support.mcp_client(mcp_url, token, era) as client,
    ):
        for index in range(warmup + calls):
            text = f"benchmark reply {index}"
            started = time.perf_counter()
            response = await http.post(send_url, json={"chat_id": CHAT, "text": text})
            bare_seconds = time.perf_counter() - started
            response.raise_for_status()
            started = time.perf_counter()
            result = await client.call_tool("send_message", {"text": text, "chat_id": f"telegram:{CHAT}"})
            tool_seconds = time.perf_counter() - started
            if result.is_error:
                raise RuntimeError(f"send_message failed: {mcp_support.text_of(result)}")
            if index >= warmup:
                bare.append(bare_seconds * 1000)
                tool.append(tool_seconds * 1000)
    return bare, tool


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def run(calls: int, warmup: int, era: str, scratch: Path) -> tuple[list[float], list[float]]:
    platforms, _ = _support()
    stand_in = platforms.TelegramBotApi({BOT_TOKEN: BOT})
    home = scratch / "dev"
    home.mkdir(mode=0o700)
    port = free_port()
    api_key = "cbk_bench_" + secrets.token_urlsafe(32)
    env = chatbox_env(
        home,
        port,
        CHATBOX_BOOTSTRAP_API_KEY=api_key,
        CHATBOX_TELEGRAM_API_URL=stand_in.root,
        CHATBOX_TELEGRAM_MODE="webhook",
        # Telegram takes https webhooks only; nothing calls this URL (the ingest below goes to loopback).
        CHATBOX_PUBLIC_URL="https://chatbox.bench.example",
    )
    # chatbox dev as it starts by default: at its default log level.
    del env["CHATBOX_LOG_LEVEL"]
    base_url = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        thread = threading.Thread(target=stand_in.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        stack.callback(stand_in.server.server_close)
        stack.callback(stand_in.server.shutdown)
        stack.enter_context(running_server("chatbox-dev", chatbox_command("dev"), env, home, f"{base_url}/health"))
        mcp_url, token = _set_up(base_url, api_key, stand_in)
        say(f"mcp send_message: {warmup} warm-up, then {calls} calls, each after a bare sendMessage ({era} era)")
        bare, tool = anyio.run(_measure, mcp_url, token, stand_in.root, calls, warmup, era)
    return bare, tool


def report(bare: list[float], tool: list[float]) -> None:
    import os
    import platform

    say()
    say(f"machine: {os.cpu_count()} cores, {platform.platform()}, python {platform.python_version()}")
    say(f"  {'call':<48}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, values in (
        ("bare stand-in sendMessage (one httpx POST)", bare),
        ("MCP send_message (SDK client -> chatbox dev)", tool),
    ):
        say(
            f"  {name:<48}{statistics.median(values):>9.2f}{_percentile(values, 0.9):>9.2f}"
            f"{_percentile(values, 0.99):>9.2f}{max(values):>9.1f}"
        )
    p50 = statistics.median(tool)
    say(f"  p50 MCP / bare: {p50 / statistics.median(bare):.1f}x")
    say(f"  MCP send_message p50: {p50:.1f} ms   target <= {TARGET_P50_MS:.0f} ms   {verdict(p50 <= TARGET_P50_MS)}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="measured calls of each kind (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up calls of each kind (default 20)")
    parser.add_argument(
        "--era", choices=("legacy", "auto"), default="legacy", help="MCP protocol era of the client (default legacy)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (the chatbox dev log)")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="cbmcp-"))
    started = time.monotonic()
    try:
        bare, tool = run(args.calls, args.warmup, args.era, scratch)
        report(bare, tool)
        say(f"(took {time.monotonic() - started:.0f}s)")
    finally:
        if args.keep:
            say(f"\nscratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
