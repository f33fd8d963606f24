"""Cold start of the Lambda functions: import time and deployment package size.

1. Import time. Each function's `handler.py` is imported in a fresh interpreter, configured the way
   the template configures it on Lambda (CHATBOX_QUEUE=sqs, so the SQS client is built too), and
   compared with, in the same run, a bare `import fastapi, mangum, sqlalchemy, psycopg` (and that
   plus `mcp` for the MCP function). Every measurement is `python -c <import>` wall time minus
   `python -c pass`, median of --runs, the candidates interleaved round by round so that machine
   noise hits them alike. What is not measured: reading the secrets from Secrets Manager (a network
   call at cold start on Lambda, not reproducible here). Beside each function, its libraries alone: every module
   its handler's import loads that is not chatbox's own code (listed by importing the handler once), imported by
   name in the same order. That floor is what no change to chatbox's code can go under; "Nx its libraries" is
   what chatbox's own code adds on top of it.
2. Import and first request. The same, plus one typical first invocation in the same process, as a cold
   start serves it (FastAPI analyses the routes of an included router when a request first walks through
   it, so part of the app's set-up is paid here): the api function answers `GET /v1/mailboxes` with an API
   key, inbound `GET /health`, mcp an MCP `initialize` for a mailbox, delivery an empty SQS batch. The
   baseline is a FastAPI app with one route answering the same `GET /v1/mailboxes` behind Mangum (plus
   `import mcp` for the MCP baseline). The database is Postgres, as the template's always is: a throwaway server
   (tests/support/postgres.py), migrated, with one account, its key and a mailbox. `--import-only` needs no server
   (nothing connects at import) and configures a Postgres URL like the template's. `--db sqlite` measures on a
   SQLite file in a scratch home instead (what runs before this change measured: it loads SQLite's dialect, which
   no deployed function does).
3. Package size, unzipped, with `--layers`: each function's folder plus the layers infra/layers.toml gives it,
   as built, bytecode included.

With `--layers DIR --python PYTHON` it measures the built layers (what `make layer` builds into DIR, bytecode
included) instead of the dev virtualenv: each handler is imported as Lambda imports it, from its own folder with
only its layers on the path (the baseline from the base and web layers, plus mcp's for the MCP baseline), under
PYTHON, with no bytecode written (Lambda's /opt is read-only). The Lambda layers are arm64; to measure on an x86_64
machine build the same layers (same pins, same bytecode) for x86_64:
`make layer LAYER_DIR=build/layers-x86_64 LAYER_PLATFORMS="manylinux_2_34_x86_64 manylinux_2_28_x86_64
manylinux_2_17_x86_64 manylinux2014_x86_64"`, then
`.venv/bin/python bench/coldstart.py --layers build/layers-x86_64 --python python3.12 --runtime DIR`
(DIR: boto3 installed for python3.12 with its bytecode, which the Lambda runtime provides). `--before FUNCTIONS LAYERS`
adds another checkout's handlers on its own built layers to the same rounds (before/after at the same machine load).

Run by hand: `.venv/bin/python bench/coldstart.py` (about 1-2 min with the default 15 runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "infra"))
import build_layers  # noqa: E402 - infra/ holds build scripts, not a package

FUNCTIONS = ("api", "inbound", "delivery", "mcp")
BASELINE = "import fastapi, mangum, sqlalchemy, psycopg"
BASELINE_MCP = BASELINE + ", mcp"
EVENTS = ROOT / "tests" / "events"
BEFORE = " (before)"  # the label suffix of the --before build's handlers
API_KEY = "cbk_" + "coldstart" * 5  # the bench account's key (a scratch database)
# The kind of URL the template's database secret gives the functions; nothing connects to it at import.
TEMPLATE_DB_URL = "postgresql+psycopg://chatbox:secret@chatbox-db.cluster-abc.eu-west-1.rds.amazonaws.com:5432/chatbox"

# One invocation as the Lambda runtime makes it: `handler(event, context)`, the answer checked.
INVOKE = """
import json
class Context:
    function_name = "chatbox-bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:chatbox-bench"
    memory_limit_in_mb = 512
    aws_request_id = "8f5b4b6e-2c1a-4d7e-9a53-0f6d2c9e1b7a"
    log_group_name = "/aws/lambda/chatbox-bench"
    log_stream_name = "2026/11/30/[$LATEST]0123456789abcdef"
    def get_remaining_time_in_millis(self):
        return 30000
answer = lambda_handler(json.loads({event!r}), Context())
assert {check}, answer
"""

# The baseline's first request: FastAPI with one route answering what the api function's first request asks.
BASELINE_APP = """
app = fastapi.FastAPI()
@app.get("/v1/mailboxes")
def list_mailboxes() -> dict:
    return {"items": [], "next_cursor": None}
lambda_handler = mangum.Mangum(app, lifespan="off")
"""

# A function's libraries alone: every module its handler's import loads that is not chatbox's own code, imported in the
# order the handler first imports it. What no change to chatbox's code can take below (the "floor" in the report).
OWN_PACKAGES = ("chatbox", "connectors", "functions", "handler")
LIST_LIBRARIES = """
import json, sys
print(json.dumps([name for name in sys.modules if name not in loaded and name.split(".")[0] not in {own!r}]))
"""
# With the cyclic collector off, as the handlers compose (chatbox.adapters.cold_start): a floor, not a baseline.
LIBRARIES = """
import gc, importlib
gc.disable()
for name in {modules!r}:
    importlib.import_module(name)
"""
FLOOR = " libraries"  # the label suffix of a function's libraries-alone candidate

# The targets of the issue "Serverless deployment".
TARGET_IMPORT_RATIO = 1.25
TARGET_PACKAGE_MB = 100.0  # bytecode included (issue "A deploy that works the first time")
MB = 1024 * 1024  # MiB, as Lambda counts its 250 MB


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Candidate:
    label: str
    code: str
    path: tuple[Path, ...] = ()  # PYTHONPATH, when not the environment's


def lambda_environment(home: Path, db_url: str) -> dict[str, str]:
    """What the template sets, with values that work offline (the SQS client is built, never called)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOX_", "AWS_"))}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "shared")]),
            "PYTHONDONTWRITEBYTECODE": "",
            "CHATBOX_HOME": str(home),
            "CHATBOX_DB_URL": db_url,
            "CHATBOX_DB_POOL_SIZE": "1",
            "CHATBOX_DB_MAX_OVERFLOW": "1",
            "CHATBOX_VAULT_KEY": "A" * 43 + "=",
            "CHATBOX_PUBLIC_URL": "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com",
            "CHATBOX_QUEUE": "sqs",
            "CHATBOX_SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/chatbox-deliveries.fifo",
            "CHATBOX_SQS_DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dead.fifo",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_SERVICE_NAME": "chatbox-bench",
        }
    )
    return env


INTERPRETER = [sys.executable]


def run_once(candidate: Candidate, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of one fresh interpreter running the candidate."""
    if candidate.path:
        env = {**env, "PYTHONPATH": os.pathsep.join(str(path) for path in candidate.path)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # stdout: the handlers' metric lines (CloudWatch EMF, printed by the first requests)
    # Ended without the interpreter's teardown (module clean-up, a last full garbage collection), which a Lambda
    # cold start never pays and which would reward a handler for what it leaves to the collector (gc.freeze).
    code = candidate.code + "\nimport os\nos._exit(0)\n"
    # No `timeout=`: with one, `subprocess` polls for the child's exit with sleeps of up to 50 ms, which rounded
    # every wall time to 50 ms steps.
    subprocess.run([*INTERPRETER, "-c", code], env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def libraries_alone(candidate: Candidate, env: dict[str, str], cwd: Path) -> Candidate:
    """`candidate` (a function's handler import) without chatbox: the modules its import loads from libraries and the
    standard library, listed by importing the handler once, imported by name in the same order."""
    if candidate.path:
        env = {**env, "PYTHONPATH": os.pathsep.join(str(path) for path in candidate.path)}
    code = "import sys\nloaded = set(sys.modules)\n" + candidate.code + LIST_LIBRARIES.format(own=OWN_PACKAGES)
    listed = subprocess.run([*INTERPRETER, "-c", code], env=env, cwd=cwd, check=True, capture_output=True, text=True)
    modules = json.loads(listed.stdout.strip().splitlines()[-1])
    return Candidate(candidate.label + FLOOR, LIBRARIES.format(modules=modules), candidate.path)


def measure_imports(
    candidates: list[Candidate], runs: int, env: dict[str, str], cwd: Path
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall-clock and CPU seconds per candidate, interpreter start-up subtracted. One warm-up round (disk
    cache) first. CPU time moves far less than wall time on a loaded machine (other processes' time is not counted)."""
    samples: dict[str, list[tuple[float, float]]] = {c.label: [] for c in candidates}
    empty: list[tuple[float, float]] = []
    for round_index in range(runs + 1):
        empty_time = run_once(Candidate("startup", "pass"), env, cwd)
        times = {c.label: run_once(c, env, cwd) for c in candidates}
        if round_index == 0:
            continue
        empty.append(empty_time)
        for label, seconds in times.items():
            samples[label].append(seconds)
    medians = []
    for kind in (0, 1):
        startup = statistics.median(sample[kind] for sample in empty)
        medians.append(
            {label: statistics.median(v[kind] for v in values) - startup for label, values in samples.items()}
        )
    return medians[0], medians[1]


def http_event(recorded: str, method: str, path: str, headers: dict[str, str], body: str | None = None) -> str:
    """A recorded API Gateway HTTP API (payload 2.0) event, re-aimed as API Gateway would send it (JSON)."""
    event = json.loads((EVENTS / recorded).read_text())
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["headers"].update(headers)
    if body is not None:
        event["body"] = body
        event["headers"]["content-length"] = str(len(body))
    return json.dumps(event)


@dataclass(frozen=True)
class FirstRequests:
    """Each candidate's first invocation (code run after its import, in the same interpreter)."""

    mailbox_id: str
    mcp_token: str

    def code(self, label: str, entry: str) -> str:
        """`label`'s first invocation; `entry`: the module its Lambda handler is imported from."""
        label = label.removesuffix(BEFORE)
        if label.startswith("baseline"):
            return BASELINE_APP + self.invocation(label)
        return f"from {entry} import handler as lambda_handler\n" + self.invocation(label)

    def invocation(self, label: str) -> str:
        list_mailboxes = http_event(
            "apigw_v2_get_health.json", "GET", "/v1/mailboxes", {"authorization": f"Bearer {API_KEY}"}
        )
        if label == "api" or label.startswith("baseline"):
            return self.invoke(list_mailboxes)
        if label == "inbound":
            return self.invoke(http_event("apigw_v2_get_health.json", "GET", "/health", {}))
        if label == "mcp":
            recorded = json.loads((EVENTS / "apigw_v2_post_mcp.json").read_text())
            initialize = http_event(
                "apigw_v2_post_mcp.json",
                "POST",
                f"/mcp/{self.mailbox_id}",
                {"authorization": f"Bearer {self.mcp_token}"},
                recorded["body"],
            )
            return self.invoke(initialize)
        return self.invoke(json.dumps({"Records": []}), check='answer == {"batchItemFailures": []}')

    def invoke(self, event: str, check: str = 'answer["statusCode"] == 200') -> str:
        return INVOKE.format(event=event, check=check)


SEED = """
import json
from chatbox.domain.addresses import AddressPolicy
from chatbox.domain.schemas import MailboxCreate
from chatbox.services.accounts import create_account
from chatbox.services.mailboxes import create_mailbox
from chatbox.store.database import Database
from chatbox.store.migrate import upgrade_to_head
database = Database({url!r})
upgrade_to_head(database.engine)
with database.session() as db:
    account_id = create_account(db, "bench", api_key={key!r}).account_id
    created = create_mailbox(db, account_id, MailboxCreate(name="bench"), policy=AddressPolicy())
    print(json.dumps({{"mailbox_id": created.mailbox.id, "mcp_token": created.mcp_token}}))
database.dispose()
"""


def seed_database(env: dict[str, str]) -> FirstRequests:
    """The scratch database the first requests read: migrated, one account with the bench key, one mailbox. Made
    with the dev virtualenv (the layers have no alembic but the migrate function's)."""
    code = SEED.format(url=env["CHATBOX_DB_URL"], key=API_KEY)
    seed_env = {**env, "PYTHONPATH": str(ROOT / "shared")}
    out = subprocess.run([sys.executable, "-c", code], env=seed_env, check=True, capture_output=True, text=True)
    return FirstRequests(**json.loads(out.stdout.strip().splitlines()[-1]))


def with_first_request(candidates: list[Candidate], requests: FirstRequests, layered: bool) -> list[Candidate]:
    """Each candidate followed by its first invocation; a function's handler is the module `handler` as Lambda
    imports it (`layered`), else `functions.<name>.handler` from the repository."""
    return [
        Candidate(
            f"{c.label} +request",
            c.code + "\n" + requests.code(c.label, "handler" if layered else f"functions.{c.label}.handler"),
            c.path,
        )
        for c in candidates
    ]


def bench_database(stack: ExitStack, kind: str, home: Path, needs_server: bool) -> str:
    """The URL the functions are configured with: a throwaway Postgres with a database of its own when the first
    requests read it, the template's kind of URL when only imports are measured, or a SQLite file (`--db sqlite`)."""
    if kind == "sqlite":
        return f"sqlite:///{home / 'chatbox.db'}"
    if not needs_server:
        return TEMPLATE_DB_URL
    # tests/ is not installed; its helper starts a throwaway server (as the postgres user when run as root).
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import create_engine, text

    from tests.support.postgres import start_postgres

    server = start_postgres("coldstart")
    stack.callback(server.stop)
    admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text('CREATE DATABASE "coldstart"'))
    finally:
        admin.dispose()
    url: str = server.url_for("coldstart")
    return url


def report_ratios(wall: dict[str, float], cpu: dict[str, float], suffix: str = "") -> None:
    say(f"   {'':<36} {'wall ms':>8} {'ratio':>6} {'CPU ms':>8} {'ratio':>6}  target (wall)")
    before = [name + BEFORE for name in FUNCTIONS if name + BEFORE + suffix in wall]
    for name in ("baseline", "baseline+mcp", *FUNCTIONS, *before):
        key = name + suffix
        base = ("baseline+mcp" if name.removesuffix(BEFORE) in ("mcp", "baseline+mcp") else "baseline") + suffix
        ratio = wall[key] / wall[base]
        label = {"baseline": "fastapi+mangum+sqlalchemy+psycopg", "baseline+mcp": "  ... + mcp"}.get(name)
        if label is None:
            verdict = f"<= {TARGET_IMPORT_RATIO}: " + ("ok" if ratio <= TARGET_IMPORT_RATIO else "MISSED")
            label = f"functions/{name}" + (" (vs baseline+mcp)" if name.startswith("mcp") else "")
            floor = name + FLOOR + suffix
            if floor in wall:
                verdict += f"; {wall[key] / wall[floor]:.2f}x its libraries"
        else:
            verdict = ""
        say(
            f"   {label:<36} {wall[key] * 1000:8.0f} {ratio:6.2f} {cpu[key] * 1000:8.0f} {cpu[key] / cpu[base]:6.2f}"
            f"  {verdict}".rstrip()
        )
        floor = name + FLOOR + suffix
        if floor in wall:
            say(
                f"   {'  its libraries alone (floor)':<36} {wall[floor] * 1000:8.0f} {wall[floor] / wall[base]:6.2f}"
                f" {cpu[floor] * 1000:8.0f} {cpu[floor] / cpu[base]:6.2f}"
            )


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def layered_candidates(
    layers: Path, runtime: list[Path], functions: Path = ROOT / "functions", suffix: str = "", baselines: bool = True
) -> list[Candidate]:
    """The baselines and handlers, each with only the built layers a function gets (infra/layers.toml) on its path,
    imported as Lambda imports them: `handler` from the function's own folder (in `functions`)."""
    config = build_layers.load()

    def path(names: list[str], folder: Path | None = None) -> tuple[Path, ...]:
        return (*([folder] if folder else []), *((layers / name / "python").resolve() for name in names), *runtime)

    base = [
        Candidate("baseline", BASELINE, path(["base", "web"])),
        Candidate("baseline+mcp", BASELINE_MCP, path(["base", "web", "mcp"])),
    ]
    return (base if baselines else []) + [
        Candidate(name + suffix, "import handler", path(config["functions"][name], functions.resolve() / name))
        for name in FUNCTIONS
    ]


def report_sizes(layers: Path) -> None:
    config = build_layers.load()
    say("\n3. deployment package, unzipped: the function folder + its layers (infra/layers.toml), bytecode included")
    for name in config["layers"]:
        say(f"   layer {name:<10} {tree_size(layers / name) / MB:6.1f} MB")
    for name, size in build_layers.function_sizes(config, layers).items():
        verdict = "ok" if size / MB <= TARGET_PACKAGE_MB else "MISSED"
        say(f"   functions/{name:<10} {size / MB:6.1f} MB  <= {TARGET_PACKAGE_MB:.0f} MB: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="imports per candidate (median)")
    parser.add_argument("--layers", type=Path, help="the built layers' folder to import from (make layer)")
    parser.add_argument("--python", help="the interpreter for --layers (python3.12, as on Lambda)")
    parser.add_argument("--runtime", type=Path, help="what the Lambda runtime adds for --layers: a folder with boto3")
    parser.add_argument(
        "--before",
        type=Path,
        nargs=2,
        metavar=("FUNCTIONS", "LAYERS"),
        help="with --layers: also measure the handlers in FUNCTIONS (another checkout's functions/) on LAYERS (its "
        "built layers) in the same rounds, against the same baseline: before and after at the same machine load",
    )
    parser.add_argument("--import-only", action="store_true", help="skip the import + first request measurement")
    parser.add_argument(
        "--db",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="the functions' database: Postgres as deployed (a throwaway server for the first requests), or SQLite",
    )
    args = parser.parse_args()
    if args.layers:
        INTERPRETER[:] = [args.python or "python3.12"]
        version = subprocess.run([*INTERPRETER, "-V"], capture_output=True, text=True, check=True).stdout.strip()
        say(f"measuring the built layers in {args.layers} with {version} (no bytecode written)")

    say(f"chatbox cold start, {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="chatbox-coldstart-") as scratch, ExitStack() as stack:
        home = Path(scratch)
        db_url = bench_database(stack, args.db, home, needs_server=not args.import_only)
        say(f"database: {args.db}" + ("" if args.import_only or args.db == "sqlite" else " (a throwaway server)"))
        env = lambda_environment(home, db_url)
        if args.layers:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            runtime = [args.runtime.resolve()] if args.runtime else []
            candidates = layered_candidates(args.layers, runtime)
            if args.before:
                functions, layers = args.before
                candidates += layered_candidates(layers, runtime, functions, suffix=BEFORE, baselines=False)
        else:
            candidates = [Candidate("baseline", BASELINE), Candidate("baseline+mcp", BASELINE_MCP)] + [
                Candidate(name, f"import functions.{name}.handler") for name in FUNCTIONS
            ]
        handlers = [c for c in candidates if c.label in FUNCTIONS]
        if not args.import_only:
            candidates += with_first_request(candidates, seed_database(env), layered=bool(args.layers))
        candidates += [libraries_alone(c, env, home) for c in handlers]
        wall, cpu = measure_imports(candidates, args.runs, env, home)
        say(f"\n1. import time, median of {args.runs}, interpreter start-up subtracted")
        report_ratios(wall, cpu)
        if not args.import_only:
            say(f"\n2. import + first request, median of {args.runs}, interpreter start-up subtracted")
            report_ratios(wall, cpu, " +request")

        if args.layers:
            report_sizes(args.layers)
        else:
            say("\n3. deployment package: build the layers (make layer) and pass --layers")


if __name__ == "__main__":
    main()
