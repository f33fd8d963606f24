"""Fault soak: inbound messages through the real `chatbox api` and `chatbox worker` on Postgres, while things break.

Messages (default 10,000) are posted to `POST /v1/connections/{id}/messages` on two container platforms
(signal and discord), spread over several chats, by a pool of sender threads. Each chat's messages are
posted one after the other (a connector sees a chat's messages in order) and re-posted until a 2xx comes
back, idempotent on `external_message_id`. The delivery worker POSTs them, signed, to a receiver in this
process that checks the Standard Webhooks signature and fails a share of attempts (half answer 503, half
sleep past the webhook timeout). On a schedule by progress (the share of messages acknowledged):

    15 %, 35 %, 60 %  SIGKILL the worker and start a new one
    45 %              SIGKILL the API and start it again (the senders re-post what was not acknowledged)
    75 %              restart Postgres (`pg_ctl restart -m fast`)

A process that exits on its own is restarted too (as a supervisor would) and reported as a crash.
After the last message, the soak waits (bounded) until every delivery is `delivered` or `dead`, then
prints one summary line to compare run to run:

    accepted           distinct messages acknowledged 2xx by the API
    delivered          accepted messages that reached the receiver with at least one successful POST
    dead               accepted messages dead-lettered in the database and never delivered
    dead_early         dead letters given fewer than the configured attempts (max attempts is meant to be exact)
    lost               accepted - delivered - dead - unfinished: must be 0
    unfinished         deliveries still pending or held when the wait ended: must be 0
    order_violations   per chat, first successful deliveries whose sequence number is below one delivered before
    duplicates         successful POSTs beyond the first per delivery (at-least-once allows them)
    *_rss_mb, *_fds    resident memory and open descriptors of the API and worker that ran to the end,
                       from their first sample after a warm-up to the end

It exits 1 if anything was lost or unfinished or a chat's order broken. Run by hand:
`.venv/bin/python bench/soak.py` (about 7 minutes), `--messages 500` for a quick one.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pipeline import chatbox_command, chatbox_env, free_port, say
from sqlalchemy import Engine, create_engine, func, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from chatbox.adapters.local_queue import WORK_QUEUE
from chatbox.domain.vault import generate_key
from chatbox.store.models import Delivery, Mailbox, Message, QueueMessage

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

REPO_DIR = Path(__file__).resolve().parent.parent

# Delivery settings of the soak. The visibility timeout is 4x the webhook timeout, the ratio of the defaults
# (60 s / 15 s), so a worker takes 3 records of a chat at once, as it does in production.
WEBHOOK_TIMEOUT_SECONDS = 1.0
VISIBILITY_SECONDS = 4.0
RETRY_BASE_SECONDS = 0.02  # backoff 0.02 x 6^(n-1): 0.02, 0.12, 0.72, 4.3, 26 s
MAX_ATTEMPTS = 6  # at a 30 % failure rate, 0.3^6: about 7 dead letters in 10,000
# The receiver's failing attempts that time out sleep this much past the webhook timeout.
TIMEOUT_OVERSHOOT_SECONDS = 0.5

WORKER_KILL, API_KILL, PG_RESTART = "worker_kill", "api_kill", "pg_restart"
FAULT_PLAN = ((0.15, WORKER_KILL), (0.35, WORKER_KILL), (0.45, API_KILL), (0.60, WORKER_KILL), (0.75, PG_RESTART))

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
ACK_TIMEOUT = 180.0  # one message unacknowledged this long stops the soak: the API is not coming back
SAMPLE_EVERY = 2.0
WARMUP_SECONDS = 10.0  # a process's memory is compared from its first sample this long after it started
SEQ = re.compile(r"\bseq=(\d+)\b")


class SoakError(Exception):
    """The soak itself cannot go on (a process does not start, the API refuses a message for good)."""


# -- the receiver ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One successful POST at the receiver."""

    delivery_id: str
    chat: str
    external_id: str
    seq: int


class FlakyReceiver:
    """A webhook receiver on 127.0.0.1 that verifies signatures and fails `failure_rate` of the attempts.

    Half of the failures answer 503 at once, half sleep past the webhook timeout (the worker gives up
    first). A success is recorded before the 200 is written, so the order of `successes` is the order in
    which the receiver accepted them.
    """

    def __init__(self, signing_secret: str, failure_rate: float, seed: int) -> None:
        self.failure_rate = failure_rate
        self.successes: list[Arrival] = []
        self.answers: Counter[str] = Counter()
        self._verifier = Webhook(signing_secret)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:
                    return  # the worker went away mid-request (SIGKILL)
                status = receiver.answer(body, {k.lower(): v for k, v in self.headers.items()})
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    self.close_connection = True  # the worker timed out or was killed; it retries

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def answer(self, body: bytes, headers: dict[str, str]) -> int:
        """The status for one POST; records it when it succeeds."""
        try:
            payload = self._verifier.verify(body, headers)
        except WebhookVerificationError:
            self._count("bad_signature")
            return 401
        with self._lock:
            roll = self._rng.random()
        if roll < self.failure_rate / 2:
            self._count("503")
            return 503
        if roll < self.failure_rate:
            self._count("timeout")
            time.sleep(WEBHOOK_TIMEOUT_SECONDS + TIMEOUT_OVERSHOOT_SECONDS)
            return 503
        message = payload["message"]
        found = SEQ.search(message["text"] or "")
        arrival = Arrival(payload["id"], payload["chat_id"], message["external_id"], int(found[1]) if found else -1)
        with self._lock:
            self.answers["ok"] += 1
            self.successes.append(arrival)
        return 200

    def _count(self, answer: str) -> None:
        with self._lock:
            self.answers[answer] += 1

    def snapshot(self) -> list[Arrival]:
        with self._lock:
            return list(self.successes)

    @contextmanager
    def serving(self) -> Iterator[FlakyReceiver]:
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)


# -- processes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    pid: int
    at: float  # monotonic
    rss_kb: int
    fds: int


def sample_process(pid: int) -> Sample | None:
    """Resident memory and open descriptors of a live process, from /proc; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), None)
    if rss is None:
        return None  # still in exec, or already a zombie
    return Sample(pid, time.monotonic(), rss, fds)


@dataclass
class ChatboxProcess:
    """One `chatbox <command>` the soak starts, kills and starts again; every run appends to `<name>.log`."""

    name: str
    args: Sequence[str]
    env: dict[str, str]
    cwd: Path
    health_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    crashes: int = 0

    @property
    def log_path(self) -> Path:
        return self.cwd / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- soak: starting {self.name} at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            # cwd is the scratch home: a `.env` in the caller's folder must not configure the process.
            self.process = subprocess.Popen(
                chatbox_command(*self.args),
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        if self.health_url is not None:
            self._wait_healthy(self.health_url)

    def _wait_healthy(self, url: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.exited():
                raise SoakError(f"{self.name} exited while starting:\n{self.log_tail()}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SoakError(f"{self.name} did not answer {url} within {STARTUP_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finishing what is in flight."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def restart_if_crashed(self) -> bool:
        """Start the process again if it exited on its own (as a supervisor would); True if it had."""
        if not self.exited():
            return False
        assert self.process is not None
        self.crashes += 1
        say(f"  {self.name} exited on its own with {self.process.returncode}; starting it again")
        self.start()
        return True

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def sample(self) -> None:
        if self.process is not None and not self.exited():
            taken = sample_process(self.pid)
            if taken is not None:
                self.samples.append(taken)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    @contextmanager
    def running(self) -> Iterator[ChatboxProcess]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def start_postgres() -> PostgresServer:
    # tests/ is not installed; its helper starts a throwaway server, as the postgres user when run as root.
    sys.path.insert(0, str(REPO_DIR))
    from tests.support.postgres import start_postgres as start

    return start()


def restart_postgres(server: PostgresServer) -> None:
    """`pg_ctl restart -m fast`: sessions are cut, committed data stays; the options of the first start are kept."""
    data = server.folder / "data"
    command = [str(server.bindir / "pg_ctl"), "-D", str(data), "-l", str(server.folder / "log"), "-m", "fast"]
    command += ["-w", "-t", "60", "restart"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    # -l matters: without it the new server writes to our pipe and this call would wait for it to exit.
    subprocess.run(command, check=True, capture_output=True, timeout=120)


# -- set-up through the public surface ---------------------------------------------------------------


@dataclass(frozen=True)
class SoakChat:
    platform: str
    external_chat_id: str
    inbound_url: str
    inbound_token: str

    @property
    def address(self) -> str:
        return f"{self.platform}:{self.external_chat_id}"


@dataclass(frozen=True)
class Planned:
    index: int  # the global order messages are posted in
    chat: SoakChat
    seq: int  # the message's place in its chat, in its text

    @property
    def external_id(self) -> str:
        return f"soak-{self.chat.external_chat_id}-{self.seq}"

    def body(self) -> dict[str, Any]:
        return {
            "external_chat_id": self.chat.external_chat_id,
            "external_message_id": self.external_id,
            "text": f"soak message seq={self.seq} in {self.chat.address}",
            "sender_id": f"sender-{self.chat.external_chat_id}",
            "sender_name": "Soak",
        }


def bootstrap_account(env: dict[str, str], cwd: Path) -> None:
    """`chatbox bootstrap` (it migrates first) with CHATBOX_BOOTSTRAP_API_KEY from `env`."""
    done = subprocess.run(chatbox_command("bootstrap"), env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SoakError(f"chatbox bootstrap failed ({done.returncode}): {done.stderr.strip()}")


def create_mailbox(
    base_url: str, api_key: str, webhook_url: str, signing_secret: str, chats: int
) -> tuple[str, list[SoakChat]]:
    """A signing credential, a mailbox on the receiver, a signal and a discord connection; `chats` chats over both."""
    with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {api_key}"}, timeout=10.0) as client:
        credential = client.post(
            "/v1/credentials", json={"name": "soak-signing", "kind": "hmac_signing", "value": signing_secret}
        )
        credential.raise_for_status()
        mailbox = client.post(
            "/v1/mailboxes",
            json={"name": "soak", "webhook_url": webhook_url, "signing_credential_id": credential.json()["id"]},
        )
        mailbox.raise_for_status()
        mailbox_id: str = mailbox.json()["id"]
        connections = {}
        for name in ("signal", "discord"):
            # Operator-run programs (an outbound_url, as bench/pipeline.py does): nothing here sends, and a managed
            # program would need signal-cli or a Discord token.
            body = {"platform": name, "config": {"outbound_url": "http://127.0.0.1:9/v1/send"}}
            created = client.post(f"/v1/mailboxes/{mailbox_id}/connections", json=body)
            created.raise_for_status()
            connections[name] = created.json()
    found = []
    for index in range(chats):
        name = ("signal", "discord")[index % 2]
        external = f"+1555{index:07d}" if name == "signal" else f"{900000000000000000 + index}"
        connection = connections[name]
        url = f"{base_url}/v1/connections/{connection['id']}/messages"
        found.append(SoakChat(name, external, url, connection["inbound_token"]))
    return mailbox_id, found


def plan_messages(chats: Sequence[SoakChat], count: int, seed: int) -> list[Planned]:
    """`count` messages, each to a chat drawn at random; numbered in order within each chat."""
    rng = random.Random(seed)
    next_seq: Counter[str] = Counter()
    planned = []
    for index in range(count):
        chat = chats[rng.randrange(len(chats))]
        planned.append(Planned(index, chat, next_seq[chat.address]))
        next_seq[chat.address] += 1
    return planned


# -- the senders -------------------------------------------------------------------------------------


class Senders:
    """Sender threads posting the plan at `rate` messages/s; each chat belongs to one thread, which posts the
    chat's messages one after the other, each re-posted until the API acknowledges it 2xx."""

    def __init__(self, plan: Sequence[Planned], threads: int, rate: float) -> None:
        self.rate = rate
        self.accepted: set[str] = set()
        self.posts = 0
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        chats = sorted({p.chat.address for p in plan})
        owner = {address: index % threads for index, address in enumerate(chats)}
        self._work = [[p for p in plan if owner[p.chat.address] == t] for t in range(threads)]
        self._threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in self._work if w]

    def start(self) -> None:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads) and not self.errors

    def acknowledged(self) -> int:
        with self._lock:
            return len(self.accepted)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, work: Sequence[Planned]) -> None:
        try:
            with httpx.Client(timeout=10.0) as client:
                for planned in work:
                    pause = self._started + planned.index / self.rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    self._post_until_acknowledged(client, planned)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which stops the soak
            with self._lock:
                self.errors.append(exc)

    def _post_until_acknowledged(self, client: httpx.Client, planned: Planned) -> None:
        headers = {"authorization": f"Bearer {planned.chat.inbound_token}"}
        deadline = time.monotonic() + ACK_TIMEOUT
        wait = 0.05
        while True:
            with self._lock:
                self.posts += 1
            try:
                response = client.post(planned.chat.inbound_url, json=planned.body(), headers=headers)
            except httpx.TransportError:
                response = None  # the API is down or restarting: post again
            if response is not None and response.is_success:
                with self._lock:
                    self.accepted.add(planned.external_id)
                return
            if response is not None and response.status_code < 500 and response.status_code not in (408, 429):
                raise SoakError(f"the API refused {planned.external_id}: {response.status_code} {response.text}")
            if time.monotonic() > deadline:
                raise SoakError(f"{planned.external_id} not acknowledged within {ACK_TIMEOUT:.0f}s")
            time.sleep(wait)
            wait = min(wait * 2, 1.0)


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class Faults:
    plan: list[tuple[float, str]]
    done: Counter[str] = field(default_factory=Counter)

    def due(self, progress: float) -> list[str]:
        fired = [name for threshold, name in self.plan if threshold <= progress]
        self.plan = [(threshold, name) for threshold, name in self.plan if threshold > progress]
        return fired


@dataclass
class Outcome:
    messages: int
    chats: int
    failure_rate: float
    accepted: int
    delivered: int
    dead: int
    dead_early: int
    lost: int
    unfinished: int
    order_violations: int
    duplicates: int
    faults: Counter[str]
    crashes: dict[str, int]
    api: ChatboxProcess
    worker: ChatboxProcess
    seconds: float
    details: list[str]

    def summary(self) -> str:
        faults = ",".join(f"{name}*{count}" for name, count in sorted(self.faults.items())) or "none"
        crashes = ",".join(f"{name}*{count}" for name, count in self.crashes.items() if count) or "none"
        return (
            f"soak: messages={self.messages} chats={self.chats} failure_rate={self.failure_rate:g} "
            f"accepted={self.accepted} delivered={self.delivered} dead={self.dead} dead_early={self.dead_early} "
            f"lost={self.lost} unfinished={self.unfinished} order_violations={self.order_violations} "
            f"duplicates={self.duplicates} "
            f"api_rss_mb={_span(self.api, lambda s: s.rss_kb / 1024, '.0f')} "
            f"worker_rss_mb={_span(self.worker, lambda s: s.rss_kb / 1024, '.0f')} "
            f"api_fds={_span(self.api, lambda s: s.fds, 'd')} worker_fds={_span(self.worker, lambda s: s.fds, 'd')} "
            f"faults={faults} crashes={crashes} seconds={self.seconds:.0f}"
        )

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.unfinished == 0 and self.order_violations == 0


def _final_samples(process: ChatboxProcess) -> list[Sample]:
    """The samples of the process instance that ran to the end, from its first one after the warm-up."""
    if not process.samples:
        return []
    last = process.samples[-1]
    mine = [s for s in process.samples if s.pid == last.pid]
    warm = [s for s in mine if s.at - mine[0].at >= WARMUP_SECONDS]
    return warm or mine[-1:]


def _span(process: ChatboxProcess, value: Callable[[Sample], float], spec: str) -> str:
    samples = _final_samples(process)
    if not samples:
        return "?"
    return f"{value(samples[0]):{spec}}->{value(samples[-1]):{spec}}"


def delivery_counts(engine: Engine, mailbox_id: str) -> Counter[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(Delivery.status, func.count()).where(Delivery.mailbox_id == mailbox_id).group_by(Delivery.status)
        ).all()
    return Counter({status: int(count) for status, count in rows})


def mailbox_status(engine: Engine, mailbox_id: str) -> str:
    with engine.connect() as connection:
        status: str = connection.execute(select(Mailbox.status).where(Mailbox.id == mailbox_id)).scalar_one()
    return status


def run_soak(args: argparse.Namespace, scratch: Path) -> Outcome:
    started = time.monotonic()
    signing_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    api_key = "cbk_soak_" + secrets.token_urlsafe(32)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    home = scratch / "home"
    home.mkdir(mode=0o700)
    with ExitStack() as stack:
        say("starting Postgres")
        postgres = start_postgres()
        stack.callback(_stop_postgres, postgres, scratch)
        env = chatbox_env(
            home,
            port,
            CHATBOX_DB_URL=postgres.url,
            CHATBOX_VAULT_KEY=generate_key(),
            CHATBOX_BOOTSTRAP_API_KEY=api_key,
            CHATBOX_ALLOW_LOOPBACK_WEBHOOKS="1",
            CHATBOX_DELIVERY_TIMEOUT_SECONDS=str(WEBHOOK_TIMEOUT_SECONDS),
            CHATBOX_DELIVERY_RETRY_BASE_SECONDS=str(RETRY_BASE_SECONDS),
            CHATBOX_DELIVERY_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
            CHATBOX_LOCAL_QUEUE_VISIBILITY_SECONDS=str(VISIBILITY_SECONDS),
        )
        bootstrap_account(env, home)
        receiver = stack.enter_context(FlakyReceiver(signing_secret, args.failure_rate, args.seed).serving())
        api = stack.enter_context(ChatboxProcess("api", ["api"], env, home, health_url=f"{base_url}/health").running())
        worker = stack.enter_context(ChatboxProcess("worker", ["worker"], env, home).running())
        mailbox_id, chats = create_mailbox(base_url, api_key, receiver.url, signing_secret, args.chats)
        plan = plan_messages(chats, args.messages, args.seed)
        engine = create_engine(postgres.url, pool_pre_ping=True)
        stack.callback(engine.dispose)

        say(
            f"posting {args.messages} messages over {args.chats} chats at {args.rate:g}/s "
            f"({args.senders} senders), receiver failing {args.failure_rate:.0%} of attempts"
        )
        senders = Senders(plan, args.senders, args.rate)
        faults = Faults([] if args.no_faults else list(FAULT_PLAN))
        senders.start()
        next_sample = 0.0
        next_report = time.monotonic() + 15
        while senders.alive():
            progress = senders.acknowledged() / args.messages
            for fault in faults.due(progress):
                say(f"  {progress:4.0%} acknowledged: {fault}")
                inject(fault, api, worker, postgres)
                faults.done[fault] += 1
            api.restart_if_crashed()
            worker.restart_if_crashed()
            if time.monotonic() >= next_sample:
                api.sample()
                worker.sample()
                next_sample = time.monotonic() + SAMPLE_EVERY
            if time.monotonic() >= next_report:
                say(f"  {progress:4.0%} acknowledged, {len(receiver.snapshot())} successful POSTs")
                next_report = time.monotonic() + 15
            time.sleep(0.1)
        senders.join(timeout=5)
        if senders.errors:
            raise SoakError(f"a sender stopped: {senders.errors[0]!r}")

        say(f"all {senders.acknowledged()} acknowledged; waiting (at most {args.drain_timeout:.0f}s) for deliveries")
        unfinished = drain(engine, mailbox_id, api, worker, args.drain_timeout)
        api.sample()
        worker.sample()
        arrivals = receiver.snapshot()
        answers = Counter(receiver.answers)
        outcome = analyse(
            args, engine, mailbox_id, senders, arrivals, answers, faults.done, api, worker, unfinished, started
        )
    return outcome


def inject(fault: str, api: ChatboxProcess, worker: ChatboxProcess, postgres: PostgresServer) -> None:
    if fault == WORKER_KILL:
        worker.kill()
        worker.start()
    elif fault == API_KILL:
        api.kill()
        api.start()
    elif fault == PG_RESTART:
        restart_postgres(postgres)


def drain(engine: Engine, mailbox_id: str, api: ChatboxProcess, worker: ChatboxProcess, timeout: float) -> int:
    """Wait until no delivery is pending or held; returns how many still are when the time is up."""
    deadline = time.monotonic() + timeout
    next_sample = 0.0
    last_report = 0.0
    while True:
        api.restart_if_crashed()
        worker.restart_if_crashed()
        if time.monotonic() >= next_sample:
            api.sample()
            worker.sample()
            next_sample = time.monotonic() + SAMPLE_EVERY
        counts = delivery_counts(engine, mailbox_id)
        left = counts["pending"] + counts["held"]
        if left == 0:
            return 0
        if time.monotonic() - last_report >= 15:
            say(f"  {left} deliveries pending or held ({dict(counts)})")
            last_report = time.monotonic()
        if counts["held"] and mailbox_status(engine, mailbox_id) == "paused":
            say("  the mailbox is paused (auto-pause): held deliveries will not go out")
            return left
        if time.monotonic() > deadline:
            return left
        time.sleep(1.0)


def analyse(
    args: argparse.Namespace,
    engine: Engine,
    mailbox_id: str,
    senders: Senders,
    arrivals: Sequence[Arrival],
    answers: Counter[str],
    faults: Counter[str],
    api: ChatboxProcess,
    worker: ChatboxProcess,
    unfinished: int,
    started: float,
) -> Outcome:
    with engine.connect() as connection:
        rows = connection.execute(
            select(Delivery.id, Delivery.status, Delivery.attempts, Delivery.last_error, Message.external_id)
            .join(Message, Message.id == Delivery.message_id)
            .where(Delivery.mailbox_id == mailbox_id)
        ).all()
        queued = {
            row.deduplication_id: (row.queue, row.receive_count)
            for row in connection.execute(
                select(QueueMessage.deduplication_id, QueueMessage.queue, QueueMessage.receive_count)
            )
        }
    queue_rows = Counter(queue for queue, _ in queued.values())
    accepted = set(senders.accepted)
    deliveries_of: Counter[str] = Counter(row.external_id for row in rows)
    status_of = {row.external_id: row.status for row in rows}

    successes_of: Counter[str] = Counter(a.delivery_id for a in arrivals)
    first: list[Arrival] = []
    seen: set[str] = set()
    for arrival in arrivals:
        if arrival.delivery_id not in seen:
            seen.add(arrival.delivery_id)
            first.append(arrival)
    delivered_ids = {a.external_id for a in first}

    delivered = accepted & delivered_ids
    dead = {e for e in accepted - delivered if status_of.get(e) == "dead"}
    pending = {e for e in accepted - delivered if status_of.get(e) in ("pending", "held")}
    lost = accepted - delivered - dead - pending

    violations = 0
    highest: dict[str, int] = {}
    for arrival in first:
        if arrival.seq < highest.get(arrival.chat, -1):
            violations += 1
            say(f"  order: {arrival.chat} seq {arrival.seq} arrived after seq {highest[arrival.chat]}")
        highest[arrival.chat] = max(highest.get(arrival.chat, -1), arrival.seq)

    details = [
        f"sender: {senders.posts} POSTs for {len(accepted)} messages ({senders.posts - len(accepted)} re-posted)",
        f"receiver: {sum(answers.values())} POSTs: " + ", ".join(f"{k} {v}" for k, v in sorted(answers.items())),
        "deliveries in the database: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(status_of.values()).items())),
        "queue rows left: " + (", ".join(f"{k} {v}" for k, v in sorted(queue_rows.items())) or "none"),
        "attempts per delivery: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(Counter(int(row.attempts) for row in rows).items())),
    ]
    dead_rows = [row for row in rows if row.status == "dead"]
    early = [row for row in dead_rows if row.attempts < MAX_ATTEMPTS]
    reasons = Counter(_reason(row.last_error) for row in dead_rows)
    details.append(
        f"dead letters: {len(dead_rows)}, of which {len(early)} with fewer than {MAX_ATTEMPTS} attempts; reasons: "
        + (", ".join(f"{k} {v}" for k, v in reasons.most_common()) or "none")
    )
    if early:
        details.append(
            "  early ones, (attempts, receives of the queue row): "
            + ", ".join(f"({row.attempts}, {queued.get(row.id, ('-', '-'))[1]})" for row in early[:20])
        )
    stranded = [row for row in rows if row.status == "pending" and queued.get(row.id, ("",))[0] != WORK_QUEUE]
    if stranded:
        details.append(
            f"pending deliveries with no row in the work queue (nothing will deliver them): {len(stranded)}, e.g. "
            + ", ".join(
                f"{row.id} (attempts {row.attempts}, queue row {queued.get(row.id, ('none',))[0]}, receives "
                f"{queued.get(row.id, ('', '-'))[1]})"
                for row in stranded[:5]
            )
        )
    both = {e for e in accepted & delivered_ids if status_of.get(e) == "dead"}
    if both:
        details.append(f"dead in the database but delivered at the receiver (counted as delivered): {len(both)}")
    twice = [e for e, n in deliveries_of.items() if n > 1]
    if twice:
        details.append(f"messages with more than one delivery (accepted twice?): {len(twice)}, e.g. {twice[:3]}")
    strays = delivered_ids - accepted
    if strays:
        details.append(f"delivered but never acknowledged to the sender: {len(strays)}")
    if lost:
        sample = sorted(lost)[:5]
        details.append(
            f"LOST {len(lost)}: e.g. " + ", ".join(f"{e} (database: {status_of.get(e, 'no delivery')})" for e in sample)
        )
    details += [f"{process.name}: {_instances(process)}" for process in (api, worker)]
    return Outcome(
        messages=args.messages,
        chats=args.chats,
        failure_rate=args.failure_rate,
        accepted=len(accepted),
        delivered=len(delivered),
        dead=len(dead),
        dead_early=len(early),
        lost=len(lost),
        unfinished=unfinished,
        order_violations=violations,
        duplicates=sum(n - 1 for n in successes_of.values()),
        faults=faults,
        crashes={api.name: api.crashes, worker.name: worker.crashes},
        api=api,
        worker=worker,
        seconds=time.monotonic() - started,
        details=details,
    )


def _reason(error: str | None) -> str:
    return (error or "-")[:80]


def _instances(process: ChatboxProcess) -> str:
    """Each run of the process: its lifetime and its memory and descriptors first -> last (max)."""
    parts = []
    pids = list(dict.fromkeys(s.pid for s in process.samples))
    for pid in pids:
        mine = [s for s in process.samples if s.pid == pid]
        rss = [s.rss_kb / 1024 for s in mine]
        fds = [s.fds for s in mine]
        parts.append(
            f"pid {pid} {mine[-1].at - mine[0].at:.0f}s rss {rss[0]:.0f}->{rss[-1]:.0f} MB (max {max(rss):.0f}) "
            f"fds {fds[0]}->{fds[-1]} (max {max(fds)})"
        )
    return "; ".join(parts) or "no samples"


def _stop_postgres(server: PostgresServer, scratch: Path) -> None:
    log = server.folder / "log"
    if log.exists():
        shutil.copy(log, scratch / "postgres.log")
    server.stop()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000, help="inbound messages (default 10000)")
    parser.add_argument("--chats", type=int, default=24, help="chats, alternately signal and discord (default 24)")
    parser.add_argument("--failure-rate", type=float, default=0.3, help="share of failed attempts (default 0.3)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the chat draw and the receiver's failures")
    parser.add_argument("--rate", type=float, default=30.0, help="messages posted per second (default 30)")
    parser.add_argument("--senders", type=int, default=8, help="sender threads (default 8)")
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait for the last deliveries")
    parser.add_argument("--no-faults", action="store_true", help="only the failing receiver: no kills, no restart")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (process and Postgres logs)")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    # A short path: the local queue's wake socket lives in CHATBOX_HOME and Unix socket paths are short.
    scratch = Path(tempfile.mkdtemp(prefix="cbsoak-"))
    failed = True
    try:
        outcome = run_soak(args, scratch)
        say()
        say(
            f"machine: {os.cpu_count()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, python "
            f"{platform.python_version()}"
        )
        for line in outcome.details:
            say(f"  {line}")
        say(outcome.summary())
        failed = not outcome.ok
    except SoakError as exc:
        say(f"soak: error: {exc}")
    finally:
        if args.keep or failed:
            say(f"scratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
