"""A Python load generator for bench/telegram_ingest.py where wrk is not installed: the same requests as
`bench/telegram.lua` (a new update_id and message_id per request, spread over `chats` private chats, the secret
token header) over `connections` keep-alive HTTP/1.1 connections for `seconds`, then one line
`BENCH_RESULT {json}` in wrk's script's shape.

It runs in its own process (the benchmark starts it like wrk), so its CPU is not the server's. It is slower than
wrk: on a small machine it may set the pace for the bare baseline, which is why the benchmark measures the
baseline with the same generator in the same run and reports the ratio.

Usage: python bench/telegram_load.py URL SECRET RUN CHATS CONNECTIONS SECONDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

RESULT_MARKER = "BENCH_RESULT "


def _body(run: int, worker: int, counter: int, chats: int) -> bytes:
    update = run * 100_000_000 + worker * 1_000_000 + counter  # unique while a connection sends < 1e6
    chat = 5_500_000_000 + counter % chats
    person = '"first_name":"Ada","last_name":"Lovelace","username":"ada_l"'
    return (
        f'{{"update_id":{update},"message":{{"message_id":{update},'
        f'"from":{{"id":{chat},"is_bot":false,{person},"language_code":"en"}},'
        f'"chat":{{"id":{chat},{person},"type":"private"}},'
        f'"date":1764170418,"text":"benchmark message {counter}"}}}}'
    ).encode()


class Tally:
    def __init__(self) -> None:
        self.latencies_us: list[int] = []
        self.status_errors = 0
        self.read_errors = 0
        self.connect_errors = 0


async def _connection(worker: int, url: str, secret: str, run: int, chats: int, deadline: float, tally: Tally) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"X-Telegram-Bot-Api-Secret-Token: {secret}\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        tally.connect_errors += 1
        return
    counter = 0
    try:
        while time.monotonic() < deadline:
            counter += 1
            body = _body(run, worker, counter, chats)
            started = time.perf_counter()
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status_line = await reader.readuntil(b"\r\n")
            length = 0
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            tally.latencies_us.append(int((time.perf_counter() - started) * 1e6))
            if not status_line.split(b" ", 2)[1].startswith(b"2"):
                tally.status_errors += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        tally.read_errors += 1
    finally:
        writer.close()


async def _load(url: str, secret: str, run: int, chats: int, connections: int, seconds: float) -> dict[str, int]:
    tally = Tally()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(_connection(worker, url, secret, run, chats, deadline, tally) for worker in range(connections))
    )
    duration = time.monotonic() - started
    latencies = sorted(tally.latencies_us) or [0]

    def percentile(p: float) -> int:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))]

    return {
        "requests": len(tally.latencies_us),
        "duration_us": int(duration * 1e6),
        "p50_us": percentile(50),
        "p99_us": percentile(99),
        "max_us": latencies[-1],
        "connect_errors": tally.connect_errors,
        "read_errors": tally.read_errors,
        "write_errors": 0,
        "status_errors": tally.status_errors,
        "timeouts": 0,
    }


def main(argv: list[str]) -> int:
    url, secret, run, chats, connections, seconds = argv
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_load(url, secret, int(run), int(chats), int(connections), float(seconds)))
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
