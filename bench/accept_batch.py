"""In-process accepts on Postgres, without HTTP: one by one (autocommit) against group commit, per accept.

Starts a throwaway Postgres (`tests/support/postgres.py`), creates a mailbox and a signal connection through the
REST API (in process), then, on ONE thread, in interleaved rounds:

- `one by one`: `accept_inbound` in its own session, the one-statement accept in autocommit (what Postgres did
  before group commit, minus the thread hop);
- `batch of N, multi-row statement`: `PostgresGroupCommit.accept_batch` with N accepts at a time, the batch in
  one statement of arrays `unnest`-ed server side (`chatbox.store.postgres_batch_accept`) and its COMMIT, pipelined;
- `batch of N, pipelined`: the same with the one-message statement once per accept, psycopg's pipeline mode
  (the statements and the COMMIT in one round trip);
- `batch of N, one by one on the wire`: the same transaction, each statement sent after the previous one's
  answer (what pipeline mode saves).

Every accept is a new message spread over 16 chats. Reported per accept, medians of the rounds [range]: wall
microseconds, this process's CPU microseconds, and the Postgres server's CPU microseconds (postmaster and
backends). Run by hand: `.venv/bin/python bench/accept_batch.py` (about a minute).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_DIR))
sys.path.insert(0, str(REPO_DIR / "bench"))

from fastapi.testclient import TestClient  # noqa: E402
from telegram_ingest import _new_postgres_database, _postgres_cpu_seconds, _start_postgres  # noqa: E402

from chatbox.asgi import create_app  # noqa: E402
from chatbox.compose import build_runtime  # noqa: E402
from chatbox.domain.normalized import InboundMessage  # noqa: E402
from chatbox.domain.settings import Settings  # noqa: E402
from chatbox.domain.vault import generate_key  # noqa: E402
from chatbox.runtime import Runtime  # noqa: E402
from chatbox.services.accounts import create_account  # noqa: E402
from chatbox.services.group_commit_postgres import AcceptRequest, PostgresGroupCommit  # noqa: E402
from chatbox.services.inbound import accept_inbound  # noqa: E402
from chatbox.store.migrate import upgrade_to_head  # noqa: E402
from connectors import builtin_platforms  # noqa: E402

_counter = itertools.count()


def _say(line: str) -> None:
    print(line, flush=True)  # noqa: T201 - a benchmark's report


def _message() -> InboundMessage:
    number = next(_counter)
    return InboundMessage(external_chat_id=f"chat-{number % 16}", external_message_id=f"m-{number}", text="hello")


@dataclasses.dataclass
class Variant:
    label: str
    run: Callable[[int], None]  # accept this many messages
    wall: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)
    server: list[float] = dataclasses.field(default_factory=list)


def _variants(
    runtime: Runtime, connection_id: str, token: str, sizes: list[int], *, multi_row_only: bool
) -> list[Variant]:
    def one_by_one(count: int) -> None:
        for _ in range(count):
            with runtime.db.session() as session:
                accept_inbound(session, runtime.queue, connection_id, _message(), inbound_token=token)

    def batched(size: int, pipelined: bool, set_wise: bool = False) -> Callable[[int], None]:
        committer = PostgresGroupCommit(runtime.db, runtime.queue, pipelined=pipelined, set_wise=set_wise)

        def run(count: int) -> None:
            for _ in range(count // size):
                outcomes = committer.accept_batch(
                    [AcceptRequest(connection_id, [_message()], token) for _ in range(size)]
                )
                failed = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
                if failed:
                    raise failed[0]

        return run

    variants = [Variant("one by one (autocommit statement)", one_by_one)]
    for size in sizes:
        variants.append(Variant(f"batch of {size}, multi-row statement", batched(size, True, set_wise=True)))
        variants.append(Variant(f"batch of {size}, pipelined", batched(size, True)))
        if not multi_row_only:
            variants.append(Variant(f"batch of {size}, one by one on the wire", batched(size, False)))
    return variants


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accepts", type=int, default=1024, help="accepts per variant per round (default 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--sizes", default="2,8,32", help="batch sizes (default 2,8,32; alone is one by one)")
    parser.add_argument(
        "--multi-row-only",
        action="store_true",
        help="per size only the multi-row statement and the one-message statements pipelined",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with ExitStack() as stack:
        server = _start_postgres(stack)
        url = _new_postgres_database(server, "chatbox_accept_batch")
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        settings = Settings(home=home, db_url=url, vault_key=generate_key(), public_url="https://chatbox.example.test")
        platforms = [dataclasses.replace(spec, connector=None) for spec in builtin_platforms()]
        runtime = build_runtime(settings, platforms=platforms)
        stack.callback(runtime.close)
        upgrade_to_head(runtime.db.engine)
        connection = _connection(runtime)
        variants = _variants(
            runtime, connection["id"], connection["inbound_token"], sizes, multi_row_only=args.multi_row_only
        )
        for variant in variants:  # warm-up: statements prepared, pools filled
            variant.run(64)
        for _ in range(args.rounds):
            for variant in variants:
                server_before, cpu_before, wall_before = (
                    _postgres_cpu_seconds(server),
                    time.process_time(),
                    time.perf_counter(),
                )
                variant.run(args.accepts)
                count = args.accepts
                variant.wall.append((time.perf_counter() - wall_before) * 1e6 / count)
                variant.cpu.append((time.process_time() - cpu_before) * 1e6 / count)
                variant.server.append((_postgres_cpu_seconds(server) - server_before) * 1e6 / count)
    _say(f"accepts on Postgres in process, one thread, {args.accepts} per variant per round, {args.rounds} rounds")
    _say(f"  {'variant':<44}{'wall us':>18}{'chatbox CPU us':>20}{'Postgres CPU us':>20}")
    base = variants[0]
    for variant in variants:
        _say(f"  {variant.label:<44}{_figure(variant.wall):>18}{_figure(variant.cpu):>20}{_figure(variant.server):>20}")
    for variant in variants[1:]:
        _say(
            f"  {variant.label}: chatbox CPU {statistics.median(variant.cpu) / statistics.median(base.cpu):.2f}x, "
            f"wall {statistics.median(variant.wall) / statistics.median(base.wall):.2f}x of one by one"
        )
    return 0


def _figure(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"


def _connection(runtime: Runtime) -> Any:
    with runtime.db.session() as db:
        issued = create_account(db, "bench")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    with TestClient(create_app(runtime)) as client:
        mailbox = client.post(
            "/v1/mailboxes", json={"name": "bench", "webhook_url": "https://agent.example.test/hook"}, headers=headers
        )
        mailbox.raise_for_status()
        created = client.post(
            f"/v1/mailboxes/{mailbox.json()['id']}/connections",
            json={"platform": "signal", "config": {}, "secrets": {}},
            headers=headers,
        )
        created.raise_for_status()
        return created.json()


if __name__ == "__main__":
    raise SystemExit(main())
