"""A 202 means committed, under group commit too: SIGKILL `chatbox api` while 32 clients post, then count.

`chatbox api` on its embedded default (SQLite in a temporary CHATBOX_HOME, local queue) takes posts to
`POST /v1/connections/{id}/messages` from 32 concurrent clients, each message with a new external id. After
`--seconds` the server gets SIGKILL mid-load. Every message answered 202 must then be in the database with its
delivery and its queue row; messages without an answer may or may not be there. Exits 1 if one is missing.

Run by hand: `.venv/bin/python bench/kill_durability.py` (about 15 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pipeline import bootstrap_account, chatbox_command, chatbox_env, create_connection, free_port, say

from chatbox.domain.vault import generate_key


async def post_until_killed(url: str, token: str, clients: int, acked: list[str]) -> int:
    """Post until the server stops answering; returns the number of posts made."""
    made = 0
    headers = {"authorization": f"Bearer {token}"}

    async def client(number: int) -> None:
        nonlocal made
        async with httpx.AsyncClient(headers=headers, timeout=5.0) as http:
            for counter in range(1_000_000):
                external_id = f"k{number}-{counter}"
                body = {"external_chat_id": f"c{counter % 16}", "external_message_id": external_id, "text": "hi"}
                made += 1
                try:
                    response = await http.post(url, json=body)
                except httpx.HTTPError:
                    return
                if response.status_code == 202:
                    acked.append(external_id)

    await asyncio.gather(*(client(number) for number in range(clients)))
    return made


def stored(home: Path) -> tuple[set[str], int, int]:
    with sqlite3.connect(home / "chatbox.db") as db:
        messages = {row[0] for row in db.execute("SELECT external_id FROM messages WHERE direction = 'in'")}
        deliveries = db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        queued = db.execute("SELECT count(*) FROM queue_messages").fetchone()[0]
    return messages, deliveries, queued


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="load before the SIGKILL (default 4)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="cbkill-"))
    port = free_port()
    env = chatbox_env(home, port, CHATBOX_VAULT_KEY=generate_key())
    del env["CHATBOX_LOG_LEVEL"]
    api_key = bootstrap_account(env, home)
    base = f"http://127.0.0.1:{port}"
    with (home / "api.log").open("wb") as log:
        server = subprocess.Popen(
            chatbox_command("api"), env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        return _load_and_kill(server, home, base, api_key, args.seconds, args.clients)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _load_and_kill(
    server: subprocess.Popen[bytes], home: Path, base: str, api_key: str, seconds: float, clients: int
) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    target = create_connection(base, api_key, webhook_url=None)
    acked: list[str] = []

    def kill() -> None:
        os.kill(server.pid, signal.SIGKILL)

    async def run() -> int:
        asyncio.get_running_loop().call_later(seconds, kill)
        return await post_until_killed(target.url, target.token, clients, acked)

    made = asyncio.run(run())
    server.wait()
    messages, deliveries, queued = stored(home)
    missing = [external_id for external_id in acked if external_id not in messages]
    say(
        f"kill -9 after {seconds:g}s: posts={made} acked_202={len(acked)} stored={len(messages)} "
        f"deliveries={deliveries} queue_rows={queued} acked_but_missing={len(missing)}"
    )
    ok = not missing and deliveries == len(messages) and queued == len(messages)
    say("durability: ok" if ok else "durability: LOST ACCEPTED MESSAGES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
