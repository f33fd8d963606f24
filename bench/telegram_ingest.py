"""Benchmark of Telegram webhook ingest on one machine, over loopback.

wrk drives `POST /v1/ingest/telegram/{connection_id}` with real update JSON (a new update_id and
message_id per request, the secret token header set) against:

- the baseline, `bench/bare_telegram.py`: a bare FastAPI endpoint that checks the header in constant
  time and parses the update with a pydantic model of it, then answers 200;
- `chatbox api` on its embedded default (SQLite in a temporary CHATBOX_HOME, the local queue), with a
  telegram connection created through the REST API. CHATBOX_TELEGRAM_API_URL points at a stand-in
  Bot API in this process, which answers getMe and setWebhook and hands back the secret token
  chatbox registered; the ingest path itself calls no platform API.

Both under uvicorn with one worker, same wrk shape, same run. Reported: req/s, p50, p99 and the ratio.

Run by hand: `.venv/bin/python bench/telegram_ingest.py`. Without `wrk` (`apt-get install wrk`) both servers are
loaded by `bench/telegram_load.py`, a Python generator in its own process (slower than wrk, so compare ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from pipeline import (
    RESULT_MARKER,
    LoadResult,
    LoadShape,
    bootstrap_account,
    chatbox_command,
    chatbox_env,
    free_port,
    running_server,
    say,
    verdict,
)

from chatbox.domain.vault import generate_key

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "telegram.lua"
BOT_TOKEN = "7012345678:AAHbenchbenchbenchbenchbenchbench00"

# The targets of the issue "Telegram and Slack connectors in webhook mode".
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0


class StandInBotApi:
    """Enough of the Bot API for connection create: getMe and setWebhook (whose secret_token it keeps)."""

    def __init__(self) -> None:
        self.secret_token: str | None = None
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-type", "").startswith("application/json"):
                    params = json.loads(raw or b"{}")
                else:
                    params = dict(parse_qsl(raw.decode()))
                method = self.path.rsplit("/", 1)[-1]
                result: Any = True
                if method == "getMe":
                    result = {"id": 7012345678, "is_bot": True, "first_name": "Bench", "username": "bench_bot"}
                elif method == "setWebhook":
                    stand_in.secret_token = params.get("secret_token")
                payload = json.dumps({"ok": True, "result": result}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def serving(self) -> Iterator[StandInBotApi]:
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)


def create_telegram_connection(base_url: str, api_key: str) -> str:
    """A mailbox and a telegram connection through the REST API; returns the connection's ingest URL."""
    headers = {"authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
        mailbox = client.post("/v1/mailboxes", json={"name": "bench"})
        mailbox.raise_for_status()
        connection = client.post(
            f"/v1/mailboxes/{mailbox.json()['id']}/connections",
            json={"platform": "telegram", "secrets": {"bot_token": BOT_TOKEN}},
        )
        connection.raise_for_status()
        connection_id: str = connection.json()["id"]
    return f"{base_url}/v1/ingest/telegram/{connection_id}"


LOAD_SCRIPT = BENCH_DIR / "telegram_load.py"


_GENERATOR = ["auto"]  # set once from --generator


def load_generator() -> str:
    """wrk when installed (or asked for), else the Python generator (`bench/telegram_load.py`, its own process)."""
    if _GENERATOR[0] != "auto":
        return _GENERATOR[0]
    return "wrk" if shutil.which("wrk") is not None else "python"


def run_wrk(url: str, secret: str, run: int, seconds: float, shape: LoadShape) -> LoadResult:
    if load_generator() == "python":
        command = [sys.executable, str(LOAD_SCRIPT), url, secret, str(run), str(shape.chats)]
        command += [str(shape.connections), str(seconds)]
    else:
        command = _wrk_command(url, secret, run, seconds, shape)
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(lines[-1].removeprefix(RESULT_MARKER))
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return LoadResult(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=errors,
    )


def _wrk_command(url: str, secret: str, run: int, seconds: float, shape: LoadShape) -> list[str]:
    return [
        "wrk",
        f"-t{shape.threads}",
        f"-c{shape.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        secret,
        str(run),
        str(shape.chats),
    ]


def measure(
    url: str, secret: str, name: str, runs: Iterator[int], shape: LoadShape, pid: int
) -> tuple[LoadResult, float]:
    """One warm-up and one measured wrk run; the result and the server's CPU milliseconds per request. CPU per
    request holds up on a loaded machine, where req/s mostly says how much CPU the server was given."""
    say(f"  {name}: warm-up {shape.warmup:.0f}s, then {shape.duration:.0f}s measured")
    run_wrk(url, secret, next(runs), shape.warmup, shape)
    before = _tree_cpu_seconds(pid)
    result = run_wrk(url, secret, next(runs), shape.duration, shape)
    return result, (_tree_cpu_seconds(pid) - before) * 1000 / max(result.requests, 1)


Measured = tuple[LoadResult, float]  # a wrk run and the server's CPU ms per request
REPO_DIR = BENCH_DIR.parent
# Postgres may not reach 0.9x of SQLite's accepts per chatbox process (issue 13).
TARGET_POSTGRES_RATIO = 0.9


@dataclass
class Variant:
    """One chatbox server measured in every round: on SQLite (its default) or Postgres, with N API workers."""

    label: str
    db: str = "sqlite"
    workers: int = 1
    db_url: str = ""  # a Postgres database of its own
    results: list[Measured] = field(default_factory=list)
    database_cpu: list[float] = field(default_factory=list)  # Postgres server CPU ms per request


@dataclass
class Servers:
    """Per round: the bare endpoint, then each chatbox variant (the first is `make dev`'s default)."""

    bare: list[Measured]
    variants: list[Variant]


def _start_postgres(stack: ExitStack) -> Any:
    # tests/ is not installed; its helper starts a throwaway server (as the postgres user when run as root).
    sys.path.insert(0, str(REPO_DIR))
    from tests.support.postgres import start_postgres

    server = start_postgres("bench")
    stack.callback(server.stop)
    return server


def _new_postgres_database(server: Any, name: str) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url: str = server.url_for(name)
    return url


def _postgres_cpu_seconds(server: Any) -> float:
    """CPU of the postmaster and its backends so far (exited backends count through the postmaster's children)."""
    postmaster = int((server.folder / "data" / "postmaster.pid").read_text().split()[0])
    return _tree_cpu_seconds(postmaster)


def _tree_cpu_seconds(pid: int) -> float:
    """CPU of a process, its exited children (waited for) and its live children, so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid:
            ticks += int(stat[11]) + int(stat[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _start_chatbox(
    stack: ExitStack, name: str, home: Path, bot_api: StandInBotApi, db_url: str | None, workers: int
) -> tuple[str, int, str]:
    """A `chatbox api` as `make dev` starts it (on `db_url` when given, with `workers` processes) with a telegram
    connection: the ingest URL, the server's pid and the webhook secret."""
    port = free_port()
    home.mkdir(mode=0o700)
    extra = {"CHATBOX_DB_URL": db_url} if db_url else {}
    env = chatbox_env(
        home,
        port,
        CHATBOX_VAULT_KEY=generate_key(),
        CHATBOX_TELEGRAM_API_URL=bot_api.root,
        CHATBOX_TELEGRAM_MODE="webhook",
        **extra,
    )
    # chatbox runs as `make dev` starts it: at its default log level (the bare baseline logs nothing).
    del env["CHATBOX_LOG_LEVEL"]
    api_key = bootstrap_account(env, home)
    url = f"http://127.0.0.1:{port}"
    command = chatbox_command("api", "--workers", str(workers))
    pid = stack.enter_context(running_server(name, command, env, home, f"{url}/health"))
    ingest_url = create_telegram_connection(url, api_key)
    if not bot_api.secret_token:
        raise RuntimeError("chatbox did not call setWebhook with a secret_token")
    return ingest_url, pid, bot_api.secret_token


def measure_ingest(shape: LoadShape, scratch: Path, variants: list[Variant]) -> Servers:
    """Each server per round, under the same wrk load."""
    say(f"telegram ingest: {load_generator()} -c{shape.connections}, a new update_id per request")
    bare_port = free_port()
    bare_home = scratch / "bare"
    bare_home.mkdir()
    runs = iter(range(1, 1000))
    measured = Servers(bare=[], variants=variants)
    with ExitStack() as stack:
        bot_api = stack.enter_context(StandInBotApi().serving())
        pg_server = _start_postgres(stack) if any(v.db == "postgres" for v in variants) else None
        if pg_server is not None:
            say("  Postgres started (tests/support/postgres.py)")
        started = []
        for number, variant in enumerate(variants):
            if variant.db == "postgres":
                variant.db_url = _new_postgres_database(pg_server, f"chatbox_{number}")
            home = scratch / f"chatbox-{number}"
            server = _start_chatbox(stack, f"chatbox-{number}", home, bot_api, variant.db_url or None, variant.workers)
            started.append((variant, home, *server))
        secret = started[0][4]
        bare_command = [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_telegram:app",
            "--app-dir",
            str(BENCH_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(bare_port),
            "--workers",
            "1",
            "--log-level",
            "warning",
        ]
        bare_env = {**os.environ, "BENCH_TELEGRAM_SECRET": secret}
        bare_pid = stack.enter_context(
            running_server("bare", bare_command, bare_env, bare_home, f"http://127.0.0.1:{bare_port}/health")
        )
        bare_url = f"http://127.0.0.1:{bare_port}{urlsplit(started[0][2]).path}"
        # Rounds interleaved, so a burst of other load on the machine hits every server alike.
        for _ in range(shape.rounds):
            measured.bare.append(measure(bare_url, secret, "bare", runs, shape, bare_pid))
            for variant, _home, url, pid, variant_secret in started:
                before = _postgres_cpu_seconds(pg_server) if variant.db == "postgres" else 0.0
                result = measure(url, variant_secret, variant.label, runs, shape, pid)
                variant.results.append(result)
                if variant.db == "postgres":
                    # The warm-up's share is left out by scaling to the measured run's requests.
                    spent = _postgres_cpu_seconds(pg_server) - before
                    total = result[0].requests * (1 + shape.warmup / shape.duration)
                    variant.database_cpu.append(spent * 1000 / max(total, 1))
        for variant, home, *_ in started:
            stored = _count_postgres_messages(variant.db_url) if variant.db_url else _count_messages(home)
            sent = sum(r.requests for r, _ in variant.results)
            say(f"  {variant.label} stored {stored} messages (>= {sent} answered in the measured runs)")
    return measured


def _count_messages(home: Path) -> int:
    import sqlite3

    with sqlite3.connect(home / "chatbox.db") as connection:
        count: int = connection.execute("SELECT count(*) FROM messages").fetchone()[0]
    return count


def _count_postgres_messages(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            count: int = connection.execute(text("SELECT count(*) FROM messages")).scalar_one()
    finally:
        engine.dispose()
    return count


def report(shape: LoadShape, measured: Servers) -> None:
    import platform
    import statistics

    say()
    say(f"machine: {os.cpu_count()} cores, {platform.platform()}, python {platform.python_version()}")
    say(
        "telegram ingest (POST /v1/ingest/telegram/{id}, 200; "
        f"{load_generator()} -t{shape.threads} -c{shape.connections} -d{shape.duration:.0f}s, "
        f"{shape.rounds} interleaved rounds)"
    )
    say(
        f"  {'round':<6}{'server':<44}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>7}"
        f"{'CPU ms/req':>11}"
    )
    rows = [("bare FastAPI + pydantic", measured.bare)] + [(v.label, v.results) for v in measured.variants]
    for number in range(len(measured.bare)):
        for name, results in rows:
            result, cpu = results[number]
            say(
                f"  {number + 1:<6}{name:<44}{result.per_second:>8.0f}{result.p50_ms:>9.2f}{result.p99_ms:>9.2f}"
                f"{result.max_ms:>9.1f}{result.errors:>7}{cpu:>11.2f}"
            )
    default, *others = measured.variants
    bares, chatboxes = measured.bare, default.results
    ratios = [c.per_second / b.per_second for (b, _), (c, _) in zip(bares, chatboxes, strict=True)]
    cpu_ratios = [b_cpu / c_cpu for (_, b_cpu), (_, c_cpu) in zip(bares, chatboxes, strict=True)]
    ratio = statistics.median(ratios)
    p99 = statistics.median(c.p99_ms for c, _ in chatboxes)
    errors = sum(c.errors for c, _ in chatboxes)
    say(f"  ratios per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    say(f"  median ratio chatbox/bare: {ratio:.2f}x   target >= {TARGET_RATIO}x   {verdict(ratio >= TARGET_RATIO)}")
    say(f"  median CPU per request, bare/chatbox: {statistics.median(cpu_ratios):.2f}x (the same ratio by CPU)")
    say(f"  median chatbox p99: {p99:.1f} ms   target <= {TARGET_P99_MS:.0f} ms   {verdict(p99 <= TARGET_P99_MS)}")
    say(f"  chatbox errors and non-2xx: {errors}   target 0   {verdict(errors == 0)}")
    for variant in others:
        pairs = list(zip(chatboxes, variant.results, strict=True))
        per_round = [v.per_second / d.per_second for (d, _), (v, _) in pairs]
        cpu = statistics.median(d_cpu / v_cpu for (_, d_cpu), (_, v_cpu) in pairs)
        variant_errors = sum(v.errors for v, _ in variant.results)
        median = statistics.median(per_round)
        say(f"  {variant.label} / {default.label}, req/s per round: {', '.join(f'{r:.2f}' for r in per_round)}")
        if variant.db == "postgres" and variant.workers == default.workers:
            say(
                f"    median Postgres/SQLite per chatbox process: {median:.2f}x   target >= {TARGET_POSTGRES_RATIO}x"
                f"   {verdict(median >= TARGET_POSTGRES_RATIO)}"
            )
            say(f"    median Postgres server CPU per request: {statistics.median(variant.database_cpu):.2f} ms")
        else:
            say(f"    median: {median:.2f}x")
        say(
            f"    median chatbox CPU per request, {default.label} / this: {cpu:.2f}x; "
            f"errors and non-2xx: {variant_errors}"
        )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: the server keeps a core)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per server (default 3)")
    parser.add_argument("--chats", type=int, default=16, help="chats the updates are spread over (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, bare then chatbox (default 3)")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (default auto: wrk when installed, else bench/telegram_load.py)",
    )
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: also measure chatbox on a throwaway Postgres in the same rounds (Postgres/SQLite ratio)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="above 1: also measure `chatbox api --workers N` (on each --db) in the same rounds (scaling)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (server logs, database)")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    _GENERATOR[0] = args.generator
    if load_generator() == "python":
        why = "asked for" if args.generator == "python" else "wrk is not installed (`apt-get install wrk`)"
        say(f"{why}: both servers are loaded by bench/telegram_load.py, a Python generator in its own process")
    shape = LoadShape(args.connections, args.threads, args.duration, args.warmup, args.chats, args.rounds)
    scratch = Path(tempfile.mkdtemp(prefix="cbtg-"))
    started = time.monotonic()
    try:
        variants = [Variant("chatbox api (SQLite, defaults)")]
        if args.db == "postgres":
            variants.append(Variant("chatbox api (Postgres)", db="postgres"))
        if args.workers > 1:
            variants += [Variant(f"{v.label} --workers {args.workers}", v.db, args.workers) for v in list(variants)]
        report(shape, measure_ingest(shape, scratch, variants))
        say(f"(took {time.monotonic() - started:.0f}s)")
    finally:
        if args.keep:
            say(f"\nscratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
