"""Benchmark of the inbound -> delivery pipeline on one machine, over loopback.

Two measurements, each against targets printed next to the results:

1. Inbound accept: wrk drives `POST /v1/connections/{id}/messages` on `chatbox api` (SQLite in a
   temporary CHATBOX_HOME, the local queue) and, in the same run, a bare FastAPI endpoint that
   only parses the same body with `chatbox.domain.normalized.InboundMessage` and answers 202. Both run
   under uvicorn with one worker process. Reported: req/s, p50, p99 and the chatbox/bare ratio.
2. End to end: `chatbox dev` (API + delivery worker) delivers to a webhook receiver in this
   process; messages are posted at a steady rate and each one's latency is POST start ->
   webhook arrival.

Run by hand: `.venv/bin/python bench/pipeline.py` (needs `wrk`: `apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from chatbox.domain.vault import generate_key

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "inbound.lua"
RESULT_MARKER = "BENCH_RESULT "

# The targets of the issue "Inbound -> delivery pipeline".
TARGET_ACCEPT_RATIO = 0.5
TARGET_ACCEPT_P99_MS = 25.0
# Issue 13 (ingest performance): at 50 msg/s.
TARGET_E2E_P50_MS = 10.0
TARGET_E2E_P99_MS = 50.0

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    """One wrk run, as reported by the `done()` hook of bench/inbound.lua."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.duration_s


@dataclass(frozen=True)
class Latencies:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latencies:
        millis = sorted(s * 1000 for s in seconds)
        cuts = statistics.quantiles(millis, n=100, method="inclusive")
        return cls(count=len(millis), p50_ms=cuts[49], p99_ms=cuts[98], max_ms=millis[-1])


@dataclass(frozen=True)
class EndToEndResult:
    rate: float
    total: Latencies  # POST start -> webhook arrival
    accept: Latencies  # POST start -> 202 received
    delivery: Latencies  # 202 received -> webhook arrival
    lost: int


# -- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def chatbox_env(home: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a chatbox process: the embedded default in `home`, nothing from the caller's CHATBOX_*."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CHATBOX_")}
    env.update(
        CHATBOX_HOME=str(home),
        CHATBOX_API_HOST="127.0.0.1",
        CHATBOX_API_PORT=str(port),
        # Both servers log at WARNING: access-log lines are not what this benchmark compares.
        CHATBOX_LOG_LEVEL="WARNING",
        # Every server of a benchmark is on loopback: the receiver, a connector's outbound_url.
        CHATBOX_ALLOW_LOOPBACK_WEBHOOKS="1",
    )
    env.update(extra)
    return env


@contextmanager
def running_server(name: str, command: Sequence[str], env: dict[str, str], cwd: Path, health_url: str) -> Iterator[int]:
    """Start a server subprocess, wait (bounded) until `health_url` answers 200, stop it on exit. Yields its pid."""
    log_path = cwd / f"{name}.log"
    with log_path.open("wb") as log:
        # cwd is the temporary home: a `.env` in the caller's folder must not configure the server.
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_healthy(name, process, health_url, log_path)
        yield process.pid
    finally:
        _stop(process)


def _wait_healthy(name: str, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within {STARTUP_TIMEOUT:.0f}s:\n{log_path.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group, as Ctrl-C in a terminal would (`chatbox dev` has a worker child)."""
    group = process.pid  # start_new_session: the group holds only what this benchmark started
    if process.poll() is None:
        _signal_group(group, signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(group, signal.SIGKILL)
            process.wait()
    deadline = time.monotonic() + STOP_TIMEOUT
    while _signal_group(group, 0):  # children left behind: give them the same bounded time, then kill them
        if time.monotonic() > deadline:
            _signal_group(group, signal.SIGKILL)
            break
        time.sleep(0.1)


def _signal_group(group: int, signum: int) -> bool:
    """Signal a process group; False when no process is left in it."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def chatbox_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "chatbox.cli.main", *args]


# -- set-up through the public surface ---------------------------------------------------------------


@dataclass(frozen=True)
class InboundTarget:
    url: str
    token: str


# Operator-run (it names its outbound_url), so `chatbox dev` starts no Signal program for it; nothing is sent.
CONNECTION = {"platform": "signal", "config": {"outbound_url": "http://127.0.0.1:9/v1/send"}}


def create_connection(base_url: str, api_key: str, webhook_url: str | None) -> InboundTarget:
    """A mailbox (with `webhook_url`, if given) and a signal connection, created through the REST API.

    A container platform: its connector posts to the inbound route with the connection's inbound token (a
    webhook platform such as telegram is proven by its own secret at its ingest path instead)."""
    headers = {"authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10.0) as client:
        body: dict[str, Any] = {"name": "bench"}
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        mailbox = client.post("/v1/mailboxes", json=body)
        mailbox.raise_for_status()
        connection = client.post(f"/v1/mailboxes/{mailbox.json()['id']}/connections", json=CONNECTION)
        connection.raise_for_status()
        created = connection.json()
    return InboundTarget(url=f"{base_url}/v1/connections/{created['id']}/messages", token=created["inbound_token"])


def bootstrap_account(env: dict[str, str], cwd: Path) -> str:
    """`chatbox bootstrap --json` (it also migrates): returns the API key of the first account."""
    done = subprocess.run(
        chatbox_command("bootstrap", "--json"), env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"chatbox bootstrap failed ({done.returncode}): {done.stderr.strip()}")
    api_key: str = json.loads(done.stdout)["api_key"]
    return api_key


# -- inbound accept under load ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoadShape:
    connections: int
    threads: int
    duration: float
    warmup: float
    chats: int
    rounds: int = 1


def run_wrk(target: InboundTarget, label: str, seconds: float, shape: LoadShape) -> LoadResult:
    command = [
        "wrk",
        f"-t{shape.threads}",
        f"-c{shape.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        target.url,
        "--",
        target.token,
        label,
        str(shape.chats),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
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


def measure_load(target: InboundTarget, name: str, shape: LoadShape) -> LoadResult:
    say(f"  {name}: warm-up {shape.warmup:.0f}s, then {shape.duration:.0f}s measured")
    run_wrk(target, f"{name}-warmup", shape.warmup, shape)
    return run_wrk(target, f"{name}-measured", shape.duration, shape)


def measure_accept(shape: LoadShape, scratch: Path) -> tuple[LoadResult, LoadResult]:
    """Returns (bare endpoint, chatbox) under the same wrk load."""
    say(f"inbound accept: wrk -t{shape.threads} -c{shape.connections}, a new external_message_id per request")
    bare_port, chatbox_port = free_port(), free_port()
    bare_home, chatbox_home = scratch / "bare", scratch / "accept"
    bare_home.mkdir()
    chatbox_home.mkdir(mode=0o700)
    env = chatbox_env(chatbox_home, chatbox_port, CHATBOX_VAULT_KEY=generate_key())
    # chatbox runs as `make dev` starts it: at its default log level (the bare baseline logs nothing).
    del env["CHATBOX_LOG_LEVEL"]
    api_key = bootstrap_account(env, chatbox_home)
    bare_command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bare_inbound:app",
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
    with ExitStack() as servers:
        servers.enter_context(
            running_server("bare", bare_command, env, bare_home, f"http://127.0.0.1:{bare_port}/health")
        )
        chatbox_url = f"http://127.0.0.1:{chatbox_port}"
        servers.enter_context(
            running_server("chatbox-api", chatbox_command("api"), env, chatbox_home, f"{chatbox_url}/health")
        )
        chatbox_target = create_connection(chatbox_url, api_key, webhook_url=None)
        bare_url = chatbox_target.url.replace(chatbox_url, f"http://127.0.0.1:{bare_port}")
        bare_target = InboundTarget(url=bare_url, token="unused")
        bare = measure_load(bare_target, "bare", shape)
        chatbox = measure_load(chatbox_target, "chatbox", shape)
    return bare, chatbox


# -- end to end ------------------------------------------------------------------------------------


class WebhookRecorder:
    """A webhook receiver on 127.0.0.1 that notes when each message (by external id) arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self._arrived = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                arrived = time.perf_counter()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                recorder._record(json.loads(body)["message"]["external_id"], arrived)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _record(self, external_id: str, arrived: float) -> None:
        with self._arrived:
            self.arrivals.setdefault(external_id, arrived)
            self._arrived.notify_all()

    def wait_for(self, external_ids: Sequence[str], timeout: float) -> None:
        """Wait (bounded) until every id arrived; returns quietly on timeout, the caller counts what is missing."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not all(e in self.arrivals for e in external_ids):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._arrived.wait(remaining)

    @contextmanager
    def serving(self) -> Iterator[WebhookRecorder]:
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)


def post_paced(
    client: httpx.Client, target: InboundTarget, label: str, count: int, rate: float, chats: int
) -> dict[str, tuple[float, float]]:
    """POST `count` messages one at a time, starting one every 1/rate s; returns id -> (POST start, 202 received)."""
    timings: dict[str, tuple[float, float]] = {}
    headers = {"authorization": f"Bearer {target.token}"}
    started = time.perf_counter()
    for index in range(count):
        pause = started + index / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        external_id = f"{label}-{index}"
        body = {
            "external_chat_id": f"e2e-chat-{index % chats}",
            "external_message_id": external_id,
            "text": f"benchmark message {index}",
            "sender_id": "bench-user",
            "sender_name": "Bench",
        }
        sent = time.perf_counter()
        response = client.post(target.url, json=body, headers=headers)
        accepted = time.perf_counter()
        if response.status_code != 202:
            raise RuntimeError(f"inbound POST answered {response.status_code}: {response.text}")
        timings[external_id] = (sent, accepted)
    return timings


def measure_end_to_end(count: int, rate: float, chats: int, scratch: Path) -> EndToEndResult:
    say(f"end to end: chatbox dev, {count} messages at {rate:g}/s, POST start -> webhook arrival")
    home = scratch / "e2e"
    home.mkdir(mode=0o700)
    port = free_port()
    api_key = "cbk_bench_" + secrets.token_urlsafe(32)
    env = chatbox_env(home, port, CHATBOX_BOOTSTRAP_API_KEY=api_key, CHATBOX_ALLOW_LOOPBACK_WEBHOOKS="1")
    base_url = f"http://127.0.0.1:{port}"
    with (
        WebhookRecorder().serving() as recorder,
        running_server("chatbox-dev", chatbox_command("dev"), env, home, f"{base_url}/health"),
        httpx.Client(timeout=10.0) as client,
    ):
        target = create_connection(base_url, api_key, webhook_url=recorder.url)
        warmup = post_paced(client, target, "warmup", min(50, count), rate, chats)
        recorder.wait_for(list(warmup), timeout=30.0)
        timings = post_paced(client, target, "measured", count, rate, chats)
        recorder.wait_for(list(timings), timeout=30.0)
        arrivals = dict(recorder.arrivals)
    arrived = [(sent, accepted, arrivals[e]) for e, (sent, accepted) in timings.items() if e in arrivals]
    if not arrived:
        raise RuntimeError("no webhook arrived: see chatbox-dev.log in the scratch folder")
    return EndToEndResult(
        rate=rate,
        total=Latencies.of([at - sent for sent, _, at in arrived]),
        accept=Latencies.of([accepted - sent for sent, accepted, _ in arrived]),
        delivery=Latencies.of([at - accepted for _, accepted, at in arrived]),
        lost=len(timings) - len(arrived),
    )


# -- report ----------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(shape: LoadShape, bare: LoadResult | None, chatbox: LoadResult | None, e2e: EndToEndResult | None) -> None:
    say()
    say(f"machine: {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {platform.platform()}")
    say(f"python {platform.python_version()}")
    if bare is not None and chatbox is not None:
        say()
        say(
            "inbound accept (POST /v1/connections/{id}/messages, 202; "
            f"wrk -t{shape.threads} -c{shape.connections} -d{shape.duration:.0f}s)"
        )
        say(f"  {'server':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'errors':>8}")
        for name, result in (("bare FastAPI + pydantic", bare), ("chatbox api (SQLite, local)", chatbox)):
            say(
                f"  {name:<28}{result.per_second:>10.0f}{result.p50_ms:>10.2f}{result.p99_ms:>10.2f}"
                f"{result.max_ms:>10.1f}{result.errors:>8}"
            )
        ratio = chatbox.per_second / bare.per_second
        say(
            f"  ratio chatbox/bare: {ratio:.2f}x   target >= {TARGET_ACCEPT_RATIO}x   "
            f"{verdict(ratio >= TARGET_ACCEPT_RATIO)}"
        )
        say(
            f"  chatbox p99: {chatbox.p99_ms:.1f} ms   target <= {TARGET_ACCEPT_P99_MS:.0f} ms   "
            f"{verdict(chatbox.p99_ms <= TARGET_ACCEPT_P99_MS)}"
        )
    if e2e is not None:
        say()
        say(f"end to end (chatbox dev, {e2e.total.count} messages at {e2e.rate:g}/s, {e2e.lost} lost)")
        say(f"  {'span':<36}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        for name, latencies in (
            ("POST start -> webhook arrival", e2e.total),
            ("  of which POST start -> 202", e2e.accept),
            ("  of which 202 -> webhook arrival", e2e.delivery),
        ):
            say(f"  {name:<36}{latencies.p50_ms:>10.2f}{latencies.p99_ms:>10.2f}{latencies.max_ms:>10.1f}")
        say(
            f"  e2e p50: {e2e.total.p50_ms:.1f} ms   target <= {TARGET_E2E_P50_MS:.0f} ms   "
            f"{verdict(e2e.total.p50_ms <= TARGET_E2E_P50_MS and e2e.lost == 0)}"
        )
        say(
            f"  e2e p99: {e2e.total.p99_ms:.1f} ms   target <= {TARGET_E2E_P99_MS:.0f} ms   "
            f"{verdict(e2e.total.p99_ms <= TARGET_E2E_P99_MS)}"
        )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: the server keeps a core)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per server (default 3)")
    parser.add_argument("--chats", type=int, default=16, help="chats the messages are spread over (default 16)")
    parser.add_argument("--messages", type=int, default=500, help="end-to-end messages (default 500)")
    parser.add_argument("--rate", type=float, default=50.0, help="end-to-end messages per second (default 50)")
    parser.add_argument("--skip-accept", action="store_true", help="only the end-to-end measurement")
    parser.add_argument("--skip-e2e", action="store_true", help="only the accept measurement")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (server logs, databases)")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None and not args.skip_accept:
        say("wrk is not installed: `apt-get install wrk` (Debian/Ubuntu) or see https://github.com/wg/wrk")
        return 2
    shape = LoadShape(args.connections, args.threads, args.duration, args.warmup, args.chats)
    # A short path: the local queue's wake socket lives in CHATBOX_HOME and Unix socket paths are short.
    scratch = Path(tempfile.mkdtemp(prefix="cbbench-"))
    try:
        bare = chatbox = None
        e2e = None
        if not args.skip_accept:
            bare, chatbox = measure_accept(shape, scratch)
        if not args.skip_e2e:
            e2e = measure_end_to_end(args.messages, args.rate, args.chats, scratch)
        report(shape, bare, chatbox, e2e)
    finally:
        if args.keep:
            say(f"\nscratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
